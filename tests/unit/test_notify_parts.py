"""The pieces of codepool.notify that need no server: SMTP URLs, signatures, the alert
text, how an outbox entry fans out, and the settings."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import httpx
import msgspec
import pytest

from codepool.models import WebhookEvent
from codepool.notify import email, webhook
from codepool.notify.records import plan
from codepool.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.test", ("mail.test", 25, None, None, False, None)),
        ("smtp://u:p%40ss@mail.test:2525", ("mail.test", 2525, "u", "p@ss", False, None)),
        ("smtp://mail.test:587?starttls=1", ("mail.test", 587, None, None, False, True)),
        ("smtp://mail.test?starttls=0", ("mail.test", 25, None, None, False, False)),
        ("smtps://u:@mail.test", ("mail.test", 465, "u", "", True, False)),
    ],
)
def test_smtp_url(url: str, expected: tuple[object, ...]) -> None:
    s = email.parse_smtp_url(url)
    assert (s.host, s.port, s.username, s.password, s.use_tls, s.start_tls) == expected


@pytest.mark.parametrize(
    "url", ["http://mail.test", "smtp://", "smtp://mail.test:notaport", "smtp://h?starttls=maybe"]
)
def test_bad_smtp_url(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        email.parse_smtp_url(url)


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"id":"1-0","type":"POOL_LOW"}'
    expected = hmac.new(b"topsecret", body, hashlib.sha256).hexdigest()
    assert webhook.sign(body, "topsecret") == f"sha256={expected}"


EVENT = WebhookEvent(
    id="1700000000000-0",
    type="POOL_LOW",
    time=1_700_000_000.0,
    project_id="acme",
    pool_id="p1",
    pool_name="Summer",
    threshold=5,
    available=3,
)


def test_alert_email_names_project_pool_available_and_threshold() -> None:
    message = email.compose(EVENT, "Acme Shop", ["a@x.test", "b@x.test"], "codepool@x.test")
    assert message["To"] == "a@x.test, b@x.test" and message["From"] == "codepool@x.test"
    assert message["Subject"] == "[codepool] Acme Shop: pool Summer is low (3 left)"
    text = message.get_content()
    for part in ("Acme Shop (acme)", "Summer (p1)", "Available:  3", "Threshold:  5"):
        assert part in text
    assert message.get_content_type() == "text/plain"
    exhausted = msgspec.structs.replace(EVENT, type="POOL_EXHAUSTED", available=0, threshold=None)
    message = email.compose(exhausted, "Acme Shop", ["a@x.test"], "codepool@x.test")
    assert "exhausted" in message["Subject"] and "Threshold" not in message.get_content()


def _entry(**fields: str) -> dict[bytes, bytes]:
    base = {"event_id": "9-0", "type": "POOL_LOW", "time": "1.5", "pool_id": "p1"}
    return {k.encode(): v.encode() for k, v in {**base, **fields}.items()}


def test_an_entry_fans_out_once_per_destination() -> None:
    notify = json.dumps({"emails": ["a@x.test", "a@x.test", "b@x.test"], "webhook_url": "http://h"})
    deliveries = plan(
        "acme",
        _entry(hook="http://h", notify=notify, pool_name="Summer", threshold="5", available="3"),
        2.0,
    )
    # The project webhook and the pool's are the same URL: one POST.
    assert [(d.id, d.kind, d.url, d.to) for d in deliveries] == [
        ("9-0.0", "webhook", "http://h", []),
        ("9-0.1", "email", "", ["a@x.test", "b@x.test"]),
    ]
    assert deliveries[0].event == WebhookEvent(
        id="9-0",
        type="POOL_LOW",
        time=1.5,
        project_id="acme",
        pool_id="p1",
        pool_name="Summer",
        threshold=5,
        available=3,
    )
    assert plan("acme", _entry(hook="", notify=""), 2.0) == []
    # An unreadable notify (never written so by the store) is logged, not fatal.
    assert [d.url for d in plan("acme", _entry(hook="http://p", notify="{"), 2.0)] == ["http://p"]


def test_notify_settings() -> None:
    s = load_settings({"CODEPOOL_NOTIFY": "0", "CODEPOOL_DELIVERY_BACKOFF": "0.5"})
    assert s.notify is False and s.delivery_backoff == 0.5
    assert load_settings({}).notify is True
    with pytest.raises(SettingsError, match="LEASE"):
        load_settings({"CODEPOOL_WEBHOOK_TIMEOUT": "30", "CODEPOOL_DELIVERY_LEASE": "30"})
    with pytest.raises(SettingsError, match="MAX_ATTEMPTS"):
        load_settings({"CODEPOOL_DELIVERY_MAX_ATTEMPTS": "0"})
    with pytest.raises(SettingsError, match="POLL"):
        load_settings({"CODEPOOL_NOTIFY_POLL": "0"})


async def test_a_delivery_logs_no_secret_and_tells_no_port_story(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused to 10.0.0.7:6379")

    event = WebhookEvent(id="1-0", type="POOL_LOW", time=1.0, project_id="p")
    url = "https://hook-user:hook-pass@hooks.example/in?token=tok-123"
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        refused = await webhook.post(client, url, event, "s", 1)
    ok = httpx.MockTransport(lambda request: httpx.Response(200))
    async with httpx.AsyncClient(transport=ok) as client:
        delivered = await webhook.post(client, url, event, "s", 1)
    assert refused.error == "connection failed" and delivered.ok
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "hook-pass" not in logged and "tok-123" not in logged
