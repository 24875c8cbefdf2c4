"""Every client verb, registered as a subcommand of ``codepool`` in the order its help
lists them.

Each verb is a small function over a ``Ctx``: one or two API calls, then a table for
people or the answer itself for ``--json``. They live by what they act on: projects.py
(projects and keys), pools.py, webhooks.py (webhook and dead deliveries), codes.py
(upload, export, generate, issue), rewards.py, till.py (validate, redeem, release),
trace.py (events, vouchers), stats.py.
"""

from __future__ import annotations

from codepool.client import codes, pools, projects, rewards, stats, till, trace, webhooks
from codepool.client.base import Subparsers, common_options, noun


def add_verbs(commands: Subparsers) -> None:
    """Register every client verb as a subcommand of ``codepool``."""
    common = common_options()

    projects.add_verbs(commands, common)
    pools.add_verbs(commands, common)
    webhooks.add_verbs(commands, common)
    codes.add_verbs(
        commands, noun(commands, "codes", "upload, list, export and generate codes"), common
    )
    rewards.add_verbs(commands, common)
    till.add_verbs(commands, common)
    trace.add_verbs(commands, common)
    stats.add_verbs(commands, common)
