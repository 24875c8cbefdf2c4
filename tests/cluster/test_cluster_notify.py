"""Alerts and webhooks on Redis Cluster: two app instances, each with its delivery
worker, projects on every master; every message delivered exactly once (the checks of
tests/integration/test_notify.py's two-instance test)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from codepool import keys
from codepool.app import create_app
from tests.apphelpers import (
    app_client,
    make_pool,
    make_reward,
    make_tenant,
    serve_app,
    settings_for_tests,
)
from tests.integration.test_notify import _fast, _purchase, settle
from tests.receivers import mail_sink, webhook_receiver

pytestmark = pytest.mark.cluster


async def test_two_instances_deliver_each_message_once_across_shards(
    cluster_redis: Redis, cluster_url: str
) -> None:
    with mail_sink() as sink, webhook_receiver() as hooks:
        shops = []
        async with app_client(cluster_redis, notify=False) as setup:
            for n in range(6):
                t = await make_tenant(setup, f"shop{n}")
                hook = {"url": hooks.url(f"/project/{n}"), "events": ["REDEEMED_VOUCHER"]}
                await setup.put(f"/v1/projects/{t.id}/webhook", json=hook, headers=t.admin)
                pool = await make_pool(
                    setup,
                    t,
                    [f"S{n}-{i}" for i in range(20)],
                    low_stock_thresholds=[10],
                    notify={"emails": ["ops@shop.test"], "webhook_url": hooks.url(f"/pool/{n}")},
                )
                shops.append((t, await make_reward(setup, t, pool["id"])))
        assert isinstance(cluster_redis, RedisCluster)
        nodes = {cluster_redis.get_node_from_key(keys.outbox(t.id)).name for t, _ in shops}
        assert len(nodes) == 3  # the outboxes live on every master
        settings = settings_for_tests(redis_url=cluster_url, **_fast(smtp_url=sink.url))
        async with AsyncExitStack() as stack:
            apps = [
                await stack.enter_async_context(serve_app(create_app(settings))) for _ in range(2)
            ]
            await asyncio.gather(
                *(
                    _purchase(apps[i % 2], t, reward["id"], f"u{i}")
                    for t, reward in shops
                    for i in range(12)
                )
            )
            for t, _ in shops:
                await settle(cluster_redis, t.id)
            workers = [a.app.state.services.notifier for a in apps]
    # Per shop: 12 purchases to its project hook, one alert to its pool hook and by email.
    assert sum(w.delivered for w in workers) == 6 * 14
    for n in range(6):
        project_hits = [h for h in hooks.hits if h.path == f"/project/{n}"]
        assert len(project_hits) == 12
        assert len({h.event["id"] for h in project_hits}) == 12
        assert [h.event["type"] for h in hooks.hits if h.path == f"/pool/{n}"] == ["POOL_LOW"]
    assert all(h.status == 200 for h in hooks.hits)
    assert len(sink.messages) == 6
