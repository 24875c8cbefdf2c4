"""Realistic codepool traffic for locust: a flash-sale crowd buying one reward, tills
validating and redeeming what was bought, and admins refilling the pool.

    make loadtest                                   # own server, flash-sale shape, HTML report
    CODEPOOL_ROOT_KEY=... locust -f loadtest/locustfile.py --host https://your-codepool

The test start creates a project, keys, a pool with codes and a reward on the target
(CODEPOOL_ROOT_KEY must be its root key). CODEPOOL_SHAPE picks the load shape from
loadtest/shapes.py (FlashSaleShape, SteadyShape). Every answer is decoded into the
API's own Structs; a body that does not fit is a failure.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections import deque
from typing import Any

import httpx
import jwt
import msgspec
from locust import HttpUser, between, events, task
from locust.env import Environment

from codepool.models import CodeInstance, Purchase, UploadResult, Validation
from loadtest import shapes

Shape = getattr(shapes, os.environ.get("CODEPOOL_SHAPE", "FlashSaleShape"))

INITIAL_CODES = int(os.environ.get("CODEPOOL_LOCUST_CODES", "200000"))
REFILL_CODES = 5_000


class Scenario(msgspec.Struct):
    project: str = ""
    admin: str = ""
    pos: str = ""
    pool: str = ""
    reward: str = ""
    user_secret: str = ""


SCENARIO = Scenario()
# Codes buyers were given, for the tills to present (bounded: tills take the newest).
BOUGHT: deque[str] = deque(maxlen=100_000)


def _codes(n: int) -> bytes:
    prefix = secrets.token_hex(3).upper()
    return "\n".join(f"{prefix}{i:07d}" for i in range(n)).encode()


@events.test_start.add_listener
def set_up(environment: Environment, **_: Any) -> None:
    """One project with keys, a stocked pool and a reward, made through the API."""
    root = {"Authorization": f"Bearer {os.environ.get('CODEPOOL_ROOT_KEY', 'dev-root-key')}"}
    with httpx.Client(base_url=environment.host or "", timeout=300, trust_env=False) as c:
        project_id = f"load-{secrets.token_hex(4)}"
        project = c.post("/v1/projects", json={"id": project_id, "name": "locust"}, headers=root)
        project.raise_for_status()
        keys = {}
        for role in ("admin", "pos"):
            r = c.post(
                f"/v1/projects/{project_id}/keys", json={"role": role, "name": role}, headers=root
            )
            r.raise_for_status()
            keys[role] = f"Bearer {r.json()['key']}"
        admin = {"Authorization": keys["admin"]}
        pool = c.post(
            f"/v1/projects/{project_id}/pools",
            json={"name": "flash", "low_stock_thresholds": [1000, 100]},
            headers=admin,
        ).json()["id"]
        up = c.post(
            f"/v1/projects/{project_id}/pools/{pool}/codes",
            content=_codes(INITIAL_CODES),
            headers={**admin, "Content-Type": "text/plain"},
        )
        up.raise_for_status()
        reward = c.post(
            f"/v1/projects/{project_id}/rewards",
            json={"name": "flash deal", "pool_id": pool},
            headers=admin,
        ).json()["id"]
    SCENARIO.project, SCENARIO.pool, SCENARIO.reward = project_id, pool, reward
    SCENARIO.admin, SCENARIO.pos = keys["admin"], keys["pos"]
    SCENARIO.user_secret = project.json()["user_token_secret"]


class _CodepoolUser(HttpUser):
    abstract = True

    def on_start(self) -> None:
        # Fail fast and visibly if the target is not a healthy codepool.
        with self.client.get("/healthz", name="healthz", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"unhealthy: {r.status_code}")


class FlashSaleBuyer(_CodepoolUser):
    """A shopper with a user token hammering "buy" on the deal."""

    weight = 20
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        super().on_start()
        user_id = f"shopper-{secrets.token_hex(6)}"
        token = jwt.encode(
            {"sub": user_id, "exp": int(time.time()) + 3600},
            SCENARIO.user_secret,
            algorithm="HS256",
        )
        self.headers = {"Authorization": f"Bearer {token}"}

    @task
    def buy(self) -> None:
        path = f"/v1/projects/{SCENARIO.project}/rewards/{SCENARIO.reward}/purchase"
        headers = {**self.headers, "Idempotency-Key": secrets.token_hex(8)}
        with self.client.post(path, headers=headers, name="purchase", catch_response=True) as r:
            if r.status_code == 201:
                try:
                    bought = msgspec.json.decode(r.content, type=Purchase)
                except msgspec.ValidationError as exc:
                    r.failure(f"body does not fit Purchase: {exc}")
                    return
                if bought.code:
                    BOUGHT.append(bought.code)
            elif r.status_code == 409 and b"pool_exhausted" in r.content:
                r.success()  # sold out is an answer, not an error; the admin refills
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")


class Till(_CodepoolUser):
    """A point of sale: a customer shows a code; validate it, then burn it."""

    weight = 4
    wait_time = between(0.2, 1.0)

    @task
    def checkout(self) -> None:
        if not BOUGHT:
            return
        code = BOUGHT.pop()
        headers = {"Authorization": SCENARIO.pos}
        base = f"/v1/projects/{SCENARIO.project}/codes"
        with self.client.post(
            f"{base}/validate",
            json={"code": code},
            headers=headers,
            name="validate",
            catch_response=True,
        ) as r:
            try:
                valid = msgspec.json.decode(r.content, type=Validation).valid
            except msgspec.ValidationError as exc:
                r.failure(f"body does not fit Validation: {exc}")
                return
            if not valid:
                r.failure(f"a code a buyer was given does not validate: {r.text[:200]}")
                return
        with self.client.post(
            f"{base}/redeem",
            json={"code": code},
            headers=headers,
            name="redeem",
            catch_response=True,
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                return
            try:
                msgspec.json.decode(r.content, type=CodeInstance)
            except msgspec.ValidationError as exc:
                r.failure(f"body does not fit CodeInstance: {exc}")


class Refiller(_CodepoolUser):
    """Back office topping the pool up now and then."""

    weight = 1
    wait_time = between(5, 10)

    @task
    def refill(self) -> None:
        path = f"/v1/projects/{SCENARIO.project}/pools/{SCENARIO.pool}/codes"
        headers = {"Authorization": SCENARIO.admin, "Content-Type": "text/plain"}
        with self.client.post(
            path, data=_codes(REFILL_CODES), headers=headers, name="refill", catch_response=True
        ) as r:
            try:
                result = msgspec.json.decode(r.content, type=UploadResult)
            except msgspec.ValidationError as exc:
                r.failure(f"{r.status_code}, body does not fit UploadResult: {exc}")
                return
            if result.added != REFILL_CODES:
                r.failure(f"added {result.added} of {REFILL_CODES}")
        # Occasionally look at the trace, as an admin dashboard would.
        if random.random() < 0.5:
            self.client.get(
                f"/v1/projects/{SCENARIO.project}/events?type=POOL_LOW",
                headers={"Authorization": SCENARIO.admin},
                name="events",
            )
