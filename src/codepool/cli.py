"""The ``codepool`` command line: ``codepool serve``, ``snapshot``, ``restore``, and the
client verbs that talk to a running service (codepool/client, docs/cli.md).

Each subcommand is an argparse subparser whose ``handler`` default is a function
``(args, settings) -> exit code``; add one in ``build_parser`` to add a command. The
commands themselves: serve.py (and workers.py), snapshot_commands.py, client/verbs.py.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from redis.exceptions import RedisError

from codepool import __version__
from codepool.cli_common import Handler, Terminated, log_level
from codepool.client.verbs import add_verbs as add_client_verbs
from codepool.durability.snapshot_format import SnapshotError
from codepool.embedded_error import EmbeddedRedisError
from codepool.serve import serve_command
from codepool.settings import Settings, SettingsError, load_settings
from codepool.snapshot_commands import restore_command, snapshot_command


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codepool",
        description="Hands out pre-generated voucher codes from pools, exactly once.",
        epilog="Settings come from CODEPOOL_* environment variables (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"codepool {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the HTTP API. Without CODEPOOL_REDIS_URL, start a private "
        "redis-server with its files under $CODEPOOL_DATA_DIR/redis and stop it on exit.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--workers", type=_positive, default=1, help="worker processes (default: %(default)s)"
    )
    serve.add_argument(
        "--server",
        choices=("uvicorn", "granian"),
        default="uvicorn",
        help="ASGI server running the workers (default: %(default)s, the faster one here)",
    )
    serve.set_defaults(handler=serve_command)

    snapshot = commands.add_parser(
        "snapshot",
        help="write a snapshot now",
        description="Write a snapshot of the whole state to $CODEPOOL_DATA_DIR/snapshots and "
        "print its path, size and duration. Uses the running `codepool serve`'s embedded Redis, "
        "or starts it if none runs.",
    )
    snapshot.set_defaults(handler=snapshot_command)

    restore = commands.add_parser(
        "restore",
        help="restore a snapshot into Redis",
        description="Restore FILE (plus the journal written since, when FILE is one of "
        "$CODEPOOL_DATA_DIR/snapshots) into Redis, then take a fresh snapshot. Refuses when "
        "Redis already holds codepool state, unless --force (which deletes it first).",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a snapshot (.cps) file")
    restore.add_argument(
        "--force", action="store_true", help="replace the codepool state Redis holds"
    )
    restore.add_argument(
        "--journal",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replay the journal written since FILE began (default: only for a FILE "
        "of this data directory, or with --journal-dir)",
    )
    restore.add_argument(
        "--journal-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also replay the journals in DIR (a host's data or journal directory, or the "
        "journals of many hosts gathered in one); repeat for every host (docs/scale.md)",
    )
    restore.add_argument(
        "--allow-missing-journals",
        action="store_true",
        help="restore even though hosts that journaled since FILE began have no journal "
        "here (codes they handed out may be handed out again)",
    )
    restore.set_defaults(handler=restore_command)

    # The client verbs (projects, keys, pools, codes, issue, ...): docs/cli.md.
    add_client_verbs(commands)
    mcp = commands.add_parser(
        "mcp",
        help="serve the agent tools over stdio",
        description="Serve the read-only agent tools (MCP) on stdin/stdout for a desktop "
        "agent, talking to the service at $CODEPOOL_URL with $CODEPOOL_API_KEY "
        "(docs/agents.md).",
    )
    mcp.set_defaults(handler=_mcp_command)

    return parser


def _mcp_command(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the MCP SDK takes ~0.35 s to import, which every other verb of
    # the command line would pay.
    from codepool.mcp.stdio import mcp_command  # noqa: PLC0415

    return mcp_command(args, settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        level = log_level(settings.log_level)
    except SettingsError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except SettingsError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 2
    except EmbeddedRedisError as exc:
        print(f"codepool: {exc}", file=sys.stderr)
        return 1
    except (RedisError, SnapshotError) as exc:
        # Before serving (the restore check) or in snapshot/restore: one line, no trace.
        print(f"codepool: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT
    except Terminated as exc:
        return 128 + exc.signum
