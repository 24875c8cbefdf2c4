"""The delivery worker: one asyncio task group per app process, never in a request's path.

Three loops share the work:

- read: one blocking XREADGROUP over every outbox -> each entry fanned out into
  deliveries (lua/fan_out.lua), due at once;
- dispatch: takes due deliveries (lua/claim_deliveries.lua, leased so no other worker
  sends them meanwhile) and sends each in its own task; a success completes it, a
  failure schedules the next attempt with exponential back-off, the last failure
  buries it in the dead letters;
- maintain: finds projects with an outbox and takes over outbox entries a vanished
  worker had read but not fanned out (XAUTOCLAIM).

Anything taken and not finished (a crash, a kill, a shutdown mid-send) comes back when
its lease ends: delivery is at least once. A receiver sees a message twice only when a
worker died mid-send, or an attempt timed out after the receiver had it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

import httpx
import msgspec
from redis.exceptions import RedisError, ResponseError

from codepool.notify import email, webhook
from codepool.notify.outcome import Outcome
from codepool.notify.records import DeadInfo, Delivery, plan
from codepool.notify.store import Claimed, DeliveryStore, Entries, decode_delivery
from codepool.settings import Settings

log = logging.getLogger("codepool.notify")

# Sends in flight per process; more due deliveries wait in Redis for a free slot.
MAX_SENDING = 64
# Outbox entries per read.
READ_COUNT = 100
# Projects are looked for (and stale outbox entries taken over) every this many polls.
MAINTAIN_EVERY = 5
# Longest wait between two attempts, whatever the back-off says.
MAX_BACKOFF = 3600.0
# close(): rounds of cancelling (0.05 s each) before giving up on a task.
STOP_ROUNDS = 100


def _ms(t: float) -> int:
    return int(t * 1000)


class NotifyWorker:
    def __init__(self, store: DeliveryStore, settings: Settings, *, consumer: str = "") -> None:
        self._store = store
        self._settings = settings
        # Unique per process (and per app instance in one process).
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._projects: list[str] = []
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._sending: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._smtp: email.SmtpServer | None = None
        self._smtp_problem = "no SMTP server configured (CODEPOOL_SMTP_URL is not set)"
        if settings.smtp_url:
            try:
                self._smtp = email.parse_smtp_url(settings.smtp_url)
            except ValueError as exc:
                self._smtp_problem = f"CODEPOOL_SMTP_URL is not valid: {exc}"
        # Counters for /metrics and tests.
        self.delivered = 0
        self.retried = 0
        self.dead = 0

    def start(self) -> None:
        if self._smtp is None and self._settings.smtp_url:
            log.error("%s; email alerts go to the dead letters", self._smtp_problem)
        self._http = webhook.new_client(
            self._settings.webhook_timeout, allow_private=self._settings.webhook_allow_private
        )
        for name, loop in (
            ("read", self._read_loop),
            ("dispatch", self._dispatch_loop),
            ("maintain", self._maintain_loop),
        ):
            self._loops.append(asyncio.create_task(loop(), name=f"codepool-notify-{name}"))

    async def close(self) -> None:
        """Stop at once. Sends in flight are dropped; their leases bring them back."""
        self._stopping = True
        # A cancel can be lost: on Python 3.11, asyncio.wait_for (used inside redis-py)
        # drops one that races the result it waits for. So: cancel until all have ended.
        for _ in range(STOP_ROUNDS):
            pending = [t for t in (*self._loops, *self._sending) if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.05)
        else:
            log.error("notify worker: some tasks did not stop")
        await asyncio.gather(*self._loops, *self._sending, return_exceptions=True)
        self._loops.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- loops ------------------------------------------------------------------------

    async def _forever(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` over and over; Redis trouble is logged and waited out."""
        poll = self._settings.notify_poll
        failing = False
        while not self._stopping:
            try:
                await step()
            except (RedisError, OSError) as exc:
                # Once per outage, not once per poll.
                if not failing:
                    log.warning("notify %s: %s: %s (retrying)", what, type(exc).__name__, exc)
                failing = True
                await asyncio.sleep(poll)
            except Exception:
                log.exception("notify %s: unexpected error (retrying)", what)
                await asyncio.sleep(poll)
            else:
                failing = False

    async def _read_loop(self) -> None:
        await self._forever("read", self._read_once)

    async def _read_once(self) -> None:
        poll = self._settings.notify_poll
        started = time.monotonic()
        batches: list[tuple[str, Entries]] = []
        if self._projects:
            try:
                batches = await self._store.read(
                    self._projects, self.consumer, READ_COUNT, _ms(poll)
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # An outbox vanished (deleted, or Redis restored elsewhere): look again.
                self._projects = await self._store.outbox_projects(self._projects)
        for project_id, entries in batches:
            for entry_id, fields in entries:
                await self._fan_out(project_id, entry_id, fields)
        if batches:
            self._wake.set()
        else:
            # A server that answers at once (no projects yet, fakeredis) must not spin.
            await asyncio.sleep(max(0.0, poll - (time.monotonic() - started)))

    async def _fan_out(
        self, project_id: str, entry_id: bytes, fields: dict[bytes, bytes] | None
    ) -> None:
        deliveries: list[Delivery] = []
        if fields:  # None: the entry was deleted while pending; only its ack is left
            try:
                deliveries = plan(project_id, fields, time.time())
            except (KeyError, ValueError, UnicodeDecodeError):
                log.exception("project %s: unreadable outbox entry %r", project_id, entry_id)
        await self._store.fan_out(project_id, entry_id, deliveries, _ms(time.time()))

    async def _maintain_loop(self) -> None:
        await self._forever("maintain", self._maintain_once)

    async def _maintain_once(self) -> None:
        projects = await self._store.project_ids()
        self._projects = await self._store.outbox_projects(projects)
        lease_ms = _ms(self._settings.delivery_lease)
        for project_id in self._projects:
            stale = await self._store.take_over(project_id, self.consumer, lease_ms, READ_COUNT)
            for entry_id, fields in stale:
                await self._fan_out(project_id, entry_id, fields)
            if stale:
                log.info("project %s: took over %d outbox entries", project_id, len(stale))
                self._wake.set()
        await asyncio.sleep(self._settings.notify_poll * MAINTAIN_EVERY)

    async def _dispatch_loop(self) -> None:
        await self._forever("dispatch", self._dispatch_once)

    async def _dispatch_once(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.notify_poll):
                await self._wake.wait()
        self._wake.clear()
        free = MAX_SENDING - len(self._sending)
        if free <= 0 or not self._projects or self._stopping:
            return
        now = time.time()
        lease_ms = _ms(now + self._settings.delivery_lease)
        for project_id in await self._store.due_projects(self._projects, _ms(now)):
            for claimed in await self._store.claim(project_id, _ms(now), lease_ms, free):
                if self._stopping:  # close() ran meanwhile: the lease brings it back
                    return
                task = asyncio.create_task(self._send(claimed))
                self._sending.add(task)
                task.add_done_callback(self._sent)
                free -= 1
            if free <= 0:
                return

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())
        self._wake.set()  # a slot is free: take the next due delivery without waiting

    # -- one attempt ------------------------------------------------------------------

    async def _send(self, claimed: Claimed) -> None:
        # Whatever goes wrong with Redis here, the lease runs out and another attempt
        # follows: at least once.
        try:
            outcome = await self._attempt(claimed)
            await self._settle(claimed, outcome)
        except (RedisError, OSError) as exc:
            log.warning("delivery %s: %s: %s", claimed.id, type(exc).__name__, exc)

    async def _attempt(self, claimed: Claimed) -> Outcome:
        try:
            delivery = decode_delivery(claimed.record)
        except msgspec.DecodeError as exc:
            return Outcome(ok=False, error=f"unreadable delivery record: {exc}", final=True)
        try:
            return await self._deliver(claimed, delivery)
        except (RedisError, OSError):
            raise
        except Exception as exc:  # a fault of ours: counts as a failed attempt
            log.exception("delivery %s: unexpected error", claimed.id)
            return Outcome(ok=False, error=f"internal error: {type(exc).__name__}")

    async def _deliver(self, claimed: Claimed, delivery: Delivery) -> Outcome:
        contact = await self._store.project_contact(claimed.project_id)
        if contact is None:
            return Outcome(ok=False, error="the project no longer exists", final=True)
        project_name, secret = contact
        if delivery.kind == "email" and self._smtp is None:
            return Outcome(ok=False, error=self._smtp_problem, final=True)
        limit = self._settings.webhook_timeout
        try:
            # One deadline for the whole attempt (httpx and aiosmtplib time each step):
            # the lease must outlast it, or a slow send could be taken over and doubled.
            async with asyncio.timeout(limit):
                if delivery.kind == "webhook":
                    assert self._http is not None  # set by start()
                    return await webhook.post(
                        self._http, delivery.url, delivery.event, secret, claimed.attempt
                    )
                assert self._smtp is not None
                message = email.compose(
                    delivery.event, project_name, delivery.to, self._settings.smtp_from
                )
                return await email.send(self._smtp, message, limit)
        except TimeoutError:
            return Outcome(ok=False, error=f"timed out after {limit:g} s")

    async def _settle(self, claimed: Claimed, outcome: Outcome) -> None:
        settings = self._settings
        if outcome.ok:
            await self._store.complete(claimed)
            self.delivered += 1
            return
        if outcome.final or claimed.attempt >= settings.delivery_max_attempts:
            info = DeadInfo(attempts=claimed.attempt, error=outcome.error, died_at=time.time())
            if await self._store.bury(claimed, info):
                self.dead += 1
                log.warning(
                    "project %s delivery %s gave up after %d attempts: %s",
                    claimed.project_id,
                    claimed.id,
                    claimed.attempt,
                    outcome.error,
                )
            return
        wait = min(settings.delivery_backoff * 2 ** (claimed.attempt - 1), MAX_BACKOFF)
        if await self._store.retry(claimed, _ms(time.time() + wait)):
            self.retried += 1
            log.info(
                "project %s delivery %s attempt %d failed (%s); next in %.3g s",
                claimed.project_id,
                claimed.id,
                claimed.attempt,
                outcome.error,
                wait,
            )
