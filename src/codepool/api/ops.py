"""Liveness, readiness and metrics: no auth, cheap."""

from __future__ import annotations

from litestar import Controller, MediaType, Response, get

from codepool import errors, keys
from codepool.api.deps import Svc
from codepool.api.responses import answers
from codepool.models import Health


class OpsController(Controller):
    path = "/"
    tags = ("operations",)
    include_in_schema = True

    @get("/healthz", cache_control=None)
    async def healthz(self) -> Health:
        """The process answers."""
        return Health(status="ok")

    @get("/readyz", responses=answers(errors.NotReady, auth=False))
    async def readyz(self, services: Svc) -> Health:
        """Redis answers and no restore is running; 503 otherwise."""
        try:
            restoring = await services.client.exists(keys.RESTORING)
        except Exception as exc:
            raise errors.NotReady("redis is not reachable", reason=type(exc).__name__) from None
        if restoring:
            # codepool.durability.restore: until it ends, pools are missing or half written.
            raise errors.NotReady("a restore from snapshot is running", reason="restoring")
        return Health(status="ready")

    @get("/metrics", media_type=MediaType.TEXT)
    async def metrics(self, services: Svc) -> Response[str]:
        """Prometheus text: issue calls and requests served by this worker."""
        issuer = services.issuer
        lines = [
            "# HELP codepool_issue_script_calls_total issue.lua calls made by this worker.",
            "# TYPE codepool_issue_script_calls_total counter",
            f"codepool_issue_script_calls_total {issuer.calls}",
            "# HELP codepool_issue_requests_total issue/purchase requests served by those calls.",
            "# TYPE codepool_issue_requests_total counter",
            f"codepool_issue_requests_total {issuer.requests}",
            "# HELP codepool_holds_released_total expired holds this worker gave back.",
            "# TYPE codepool_holds_released_total counter",
            f"codepool_holds_released_total {services.reaper.released}",
            "# HELP codepool_hold_reaper_leading 1 while this worker holds the reaper's lease.",
            "# TYPE codepool_hold_reaper_leading gauge",
            f"codepool_hold_reaper_leading {int(services.reaper.leading)}",
        ]
        journal = services.journal
        if journal is not None:
            lines += [
                "# HELP codepool_journal_records_total hand-out/redeem/release records journaled.",
                "# TYPE codepool_journal_records_total counter",
                f"codepool_journal_records_total {journal.records}",
                "# HELP codepool_journal_fsyncs_total journal writes (one fsync each).",
                "# TYPE codepool_journal_fsyncs_total counter",
                f"codepool_journal_fsyncs_total {journal.writes}",
                "# HELP codepool_journal_fsync_seconds_total time the worker's event loop"
                " spent writing and fsyncing the journal (it waits meanwhile).",
                "# TYPE codepool_journal_fsync_seconds_total counter",
                f"codepool_journal_fsync_seconds_total {journal.sync_seconds:.6f}",
            ]
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
