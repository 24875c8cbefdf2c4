"""The command line's client parts that need no server (tests/e2e/test_cli_verbs.py runs
the verbs against one)."""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import pytest

from codepool.cli import build_parser
from codepool.client.base import Ctx
from codepool.client.codes import generate
from codepool.client.http import Api, ApiError, Exit, UsageError, error_from, read_key
from codepool.client.options import unix_time
from codepool.client.output import _pick, _text
from codepool.client.stats import sparkline, stats
from codepool.client.upload import Source, count_codes, format_of, idempotency_key
from codepool.settings import load_settings
from codepool.store.base import new_id


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_subparsers(sub))
    return found


def test_no_option_takes_a_key_on_the_command_line() -> None:
    """A key in argv lands in the shell history and in `ps` for every user."""
    options = {
        option
        for parser in _subparsers(build_parser())
        for action in parser._actions
        for option in action.option_strings
    }
    assert {o for o in options if "key" in o} == {"--key-file", "--idempotency-key"}
    assert not {o for o in options if "token" in o or "secret" in o}


def test_every_client_verb_has_a_handler() -> None:
    parser = build_parser()
    for argv in (
        ["projects", "list"],
        ["keys", "revoke", "k1"],
        ["pools", "delete", "summer", "--yes"],
        ["codes", "upload", "summer", "a.csv", "-"],
        ["codes", "export", "summer", "-o", "x.csv"],
        ["codes", "generate", "summer", "--pattern", "A-##", "--count", "5"],
        ["issue", "summer", "-n", "3"],
        ["rewards", "purchase", "r1", "--user", "bob"],
        ["validate", "C"],
        ["events", "--follow"],
        ["stats", "summer"],
        ["vouchers", "alice"],
    ):
        assert callable(parser.parse_args(argv).handler), argv


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    settings = load_settings({"CODEPOOL_API_KEY": "from-env"})
    assert read_key(settings, None) == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert read_key(settings, key_file) == "from-file"
    with pytest.raises(UsageError, match="CODEPOOL_API_KEY"):
        read_key(load_settings({}), None)
    with pytest.raises(UsageError, match="cannot read"):
        read_key(settings, tmp_path / "missing")
    defaults = load_settings({})
    assert (defaults.url, defaults.project) == ("http://127.0.0.1:8000", "")


def test_error_answers_map_to_exit_codes() -> None:
    def answer(status: int, body: bytes) -> ApiError:
        return error_from(httpx.Response(status, content=body))

    shaped = answer(409, b'{"error":{"code":"pool_in_use","message":"m","details":{"r":1}}}')
    assert (shaped.code, shaped.exit_code) == ("pool_in_use", Exit.API_ERROR)
    assert shaped.line() == 'error: pool_in_use: m {"r":1}'
    assert answer(401, b'{"error":{"code":"unauthorized","message":"m"}}').exit_code == Exit.AUTH
    assert answer(403, b'{"error":{"code":"forbidden","message":"m"}}').exit_code == Exit.AUTH
    assert answer(404, b'{"error":{"code":"x","message":"m"}}').exit_code == Exit.NOT_FOUND
    proxy = answer(502, b"<html>Bad gateway</html>")
    assert (proxy.code, proxy.exit_code) == ("http_502", Exit.UNAVAILABLE)
    assert proxy.line() == "error: http_502: <html>Bad gateway</html>"


def test_upload_format_and_idempotency_key() -> None:
    assert format_of("codes.CSV", None) == "csv"
    assert format_of("codes.json", None) == "json"
    assert format_of("codes.txt", None) == "text"
    assert format_of("-", None) == "text"
    assert format_of("codes.csv", "text") == "text"
    source = Source("a.txt", Path("a.txt"), 10, "ab" * 32)
    key = idempotency_key(source, "p", "pool", "text/plain", "allow")
    assert key == idempotency_key(source, "p", "pool", "text/plain", "allow")
    assert len(key) <= 255 and key.isprintable()
    other = Source("b.txt", Path("b.txt"), 10, "cd" * 32)
    assert key != idempotency_key(other, "p", "pool", "text/plain", "allow")
    assert key != idempotency_key(source, "p", "pool2", "text/plain", "allow")
    assert key != idempotency_key(source, "p", "pool", "text/plain", "skip")
    assert count_codes(b"A,B\nC\n", "text") == 3
    assert count_codes(b'{"codes": ["A", "B"]}', "json") == 3  # approximate: "codes" counts


def test_fields_for_scripts() -> None:
    data = {"id": "x", "codes": [{"code": "A"}, {"code": "B"}], "valid": False, "n": None}
    assert _text(_pick(data, "id")) == "x"
    assert _text(_pick(data, "codes.1.code")) == "B"
    assert _text(_pick(data, "codes.code")) == "A\nB"
    assert _text(_pick(data, "valid")) == "false"
    assert _text(_pick(data, "n")) == ""
    with pytest.raises(UsageError, match="no field"):
        _pick(data, "nope")


def test_sparkline_and_times() -> None:
    assert sparkline([0, 4, 8]) == " ▄█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([1, 100]) == "▁█"  # a non-zero minute never looks empty
    assert unix_time("1700000000.5") == 1700000000.5
    assert unix_time("2026-01-01T00:00:00Z") == unix_time("2026-01-01T00:00:00")
    with pytest.raises(argparse.ArgumentTypeError):
        unix_time("next tuesday")


def _run_verb(
    argv: list[str], answers: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run a verb against answers by path (no server): exit code, stdout, stderr."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = answers.get(request.url.path)
        if body is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        return httpx.Response(200, json=body)

    args = build_parser().parse_args([*argv, "--project", "p1"])
    settings = load_settings({"CODEPOOL_API_KEY": "k"})
    ctx = Ctx(args, settings)
    ctx._api = Api("http://codepool.test", "k", transport=httpx.MockTransport(answer))
    verb = {"stats": stats, "generate": generate}[argv[0] if argv[0] == "stats" else argv[1]]
    try:
        code = int(verb(ctx) or 0)
    finally:
        ctx._api.__exit__()
    out, err = capsys.readouterr()
    return code, out, err


POOLS = {
    "data": [{"id": "pool1", "name": "summer", "total": 9, "available": 5}],
    "matched": 1,
    "matched_limited": False,
    "skip": 0,
    "limit": 1000,
}


def test_stats_draws_a_chart_of_the_contracts_answer(capsys: pytest.CaptureFixture[str]) -> None:
    series = [{"t": 60.0 * i, "issued": i % 4, "redeemed": 0, "released": 1} for i in range(10)]
    answers: dict[str, object] = {
        "/v1/projects/p1/pools": POOLS,
        "/v1/projects/p1/pools/pool1/stats": {
            "pool_id": "pool1",
            "available": 5,
            "rate_per_minute": 1.5,
            "empty_at": 200.0,
            "series": series,
        },
    }
    code, out, _ = _run_verb(["stats", "summer", "--minutes", "10"], answers, capsys)
    assert code == 0
    issued = next(line for line in out.splitlines() if line.startswith("issued"))
    assert " ▃▅█ ▃▅█ ▃" in issued and "13 (max 3/min)" in issued
    assert "1.5 codes/min" in out and "1970-01-01 00:03:20Z" in out


def test_generate_prints_the_contracts_answer(capsys: pytest.CaptureFixture[str]) -> None:
    answers: dict[str, object] = {
        "/v1/projects/p1/pools": POOLS,
        "/v1/projects/p1/pools/pool1/codes/generate": {
            "added": 50,
            "total": 59,
            "available": 55,
            "space": 1048576,
            "guess_probability": 5.2e-05,
        },
    }
    argv = ["codes", "generate", "summer", "--pattern", "G-####", "--count", "50"]
    code, out, _ = _run_verb(argv, answers, capsys)
    assert code == 0 and out.startswith("generated 50 codes; the pool holds 59 (55 available)")


def test_server_ids_never_start_with_a_dash() -> None:
    """An id like "-x3Fq9" would be read as an option by the command line."""
    assert not any(new_id().startswith("-") for _ in range(3000))
