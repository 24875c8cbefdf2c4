"""Webhook attempts: a signed JSON POST; any 2xx answer means delivered."""

from __future__ import annotations

import hashlib
import hmac
import logging

import httpx
import msgspec

from codepool import __version__
from codepool.models import WebhookEvent
from codepool.notify.destinations import public_only_transport
from codepool.notify.outcome import DELIVERED, Outcome

SIGNATURE_HEADER = "X-Codepool-Signature"
EVENT_ID_HEADER = "X-Codepool-Event-Id"
EVENT_TYPE_HEADER = "X-Codepool-Event-Type"
ATTEMPT_HEADER = "X-Codepool-Delivery-Attempt"
_encoder = msgspec.json.Encoder()

# httpx logs every request's full URL at INFO, credentials and query tokens included
# (https://user:pass@host/hook?token=...): only its warnings reach codepool's log.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body, keyed with the project's webhook_secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def new_client(timeout: float, *, allow_private: bool = False) -> httpx.AsyncClient:
    """One client per worker: connections to a receiver are reused across deliveries.

    Redirects are not followed: a signed body is meant for the configured URL only.
    Unless ``allow_private``, every connection goes to a checked public address only.
    """
    return httpx.AsyncClient(
        transport=None if allow_private else public_only_transport(),
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": f"codepool/{__version__}"},
    )


async def post(
    client: httpx.AsyncClient, url: str, event: WebhookEvent, secret: str, attempt: int
) -> Outcome:
    """POST the event to ``url``. The body is the same bytes on every attempt."""
    body = _encoder.encode(event)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, secret),
        EVENT_ID_HEADER: event.id,
        EVENT_TYPE_HEADER: event.type,
        ATTEMPT_HEADER: str(attempt),
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return Outcome(ok=False, error="timed out")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return Outcome(ok=False, error="bad webhook URL", final=True)
    except httpx.HTTPError:  # refused, reset, DNS: the receiver may be back later
        # Generic on purpose: "connection refused" against "timed out" per port would let
        # an admin map which internal ports answer (the dead letters show this text).
        return Outcome(ok=False, error="connection failed")
    if 200 <= response.status_code < 300:
        return DELIVERED
    return Outcome(ok=False, error=f"HTTP {response.status_code}")
