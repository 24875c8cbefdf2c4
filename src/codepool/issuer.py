"""Coalesces concurrent issue/purchase requests for a pool into one script call.

While a call for a pool is in flight, new requests for that pool queue up; when it
returns, everything queued goes out in the next call. Nothing waits on a timer: a
lone request goes out at once, and under load one Redis round trip serves many HTTP
requests (group commit). Each waiter gets its own result.
"""

from __future__ import annotations

import asyncio
from collections import deque

from codepool.store.base import Backend
from codepool.store.issuing import IssueRequest, IssueResult, issue_batch

# Codes one script call hands out at most: bounds how long Redis is busy per call.
MAX_BATCH_CODES = 5_000


class _PoolQueue:
    __slots__ = ("pending", "running")

    def __init__(self) -> None:
        self.pending: deque[tuple[IssueRequest, asyncio.Future[IssueResult]]] = deque()
        self.running = False


class Issuer:
    def __init__(self, backend: Backend, max_requests: int) -> None:
        self._backend = backend
        self._max_requests = max_requests
        self._queues: dict[tuple[str, str], _PoolQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # script calls made (for /metrics and tests)
        self.requests = 0  # requests served

    async def issue(self, project_id: str, pool_id: str, request: IssueRequest) -> IssueResult:
        key = (project_id, pool_id)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _PoolQueue()
        future: asyncio.Future[IssueResult] = asyncio.get_running_loop().create_future()
        queue.pending.append((request, future))
        if not queue.running:
            queue.running = True
            task = asyncio.create_task(self._drain(key, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a client that goes away must not cancel the batch others wait on.
        return await asyncio.shield(future)

    async def _drain(self, key: tuple[str, str], queue: _PoolQueue) -> None:
        try:
            while queue.pending:
                batch = self._take(queue)
                try:
                    results = await issue_batch(
                        self._backend, key[0], key[1], [r for r, _ in batch]
                    )
                except Exception as exc:  # every waiter must learn of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.calls += 1
                self.requests += len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            queue.running = False
            if not queue.pending:
                self._queues.pop(key, None)

    def _take(self, queue: _PoolQueue) -> list[tuple[IssueRequest, asyncio.Future[IssueResult]]]:
        batch = [queue.pending.popleft()]
        codes = batch[0][0].count
        while queue.pending and len(batch) < self._max_requests:
            nxt = queue.pending[0][0].count
            if codes + nxt > MAX_BATCH_CODES:
                break
            codes += nxt
            batch.append(queue.pending.popleft())
        return batch

    async def close(self) -> None:
        """Let batches in flight finish (their codes are already spoken for)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
