"""The per-process object graph the handlers use, built once by the app's lifespan."""

from __future__ import annotations

from redis.asyncio import Redis

from codepool.auth import AuthCache
from codepool.durability.hosts import host_id
from codepool.durability.journal import Journal, journal_dir, rotation
from codepool.holds import HoldReaper
from codepool.issuer import Issuer
from codepool.notify.store import DeliveryStore
from codepool.notify.worker import NotifyWorker
from codepool.settings import Settings
from codepool.store.base import Backend
from codepool.store.codes import CodeStore
from codepool.store.generate import CodeGenerator
from codepool.store.pools import PoolStore
from codepool.store.pos import PosStore
from codepool.store.projects import ProjectStore
from codepool.store.rewards import RewardStore
from codepool.store.stats import StatsStore
from codepool.store.trace import TraceStore


class Services:
    def __init__(self, client: Redis, settings: Settings) -> None:
        self.settings = settings
        self.client = client
        # The journal only matters while snapshots are taken: they are what it completes.
        self.journal = (
            Journal(
                journal_dir(settings.data_dir),
                rotation(settings.snapshot_interval),
                host=host_id(settings),
            )
            if settings.journal and settings.snapshot_interval > 0
            else None
        )
        self.backend = Backend(client, settings, self.journal)
        self.projects = ProjectStore(self.backend)
        self.pools = PoolStore(self.backend)
        self.codes = CodeStore(self.backend)
        self.generator = CodeGenerator(self.backend, self.codes)
        self.rewards = RewardStore(self.backend)
        self.trace = TraceStore(self.backend)
        self.stats = StatsStore(self.backend)
        self.pos = PosStore(self.backend)
        self.issuer = Issuer(self.backend, settings.issue_batch_max)
        self.auth_cache = AuthCache()
        self.deliveries = DeliveryStore(self.backend)
        self.notifier = NotifyWorker(self.deliveries, settings) if settings.notify else None
        self.reaper = HoldReaper(self.backend)

    def start(self) -> None:
        """Start this process's background work (the delivery worker, unless disabled;
        the hold reaper, which reaps only while it holds the lease)."""
        if self.notifier is not None:
            self.notifier.start()
        self.reaper.start()

    async def close(self) -> None:
        await self.reaper.close()
        if self.notifier is not None:
            await self.notifier.close()
        await self.issuer.close()
        if self.journal is not None:
            await self.journal.close()
