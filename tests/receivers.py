"""Real receivers on loopback for notification tests: an HTTP webhook receiver and an
SMTP server (aiosmtpd), each in its own thread, plus a polling helper.

Both record what they got; the webhook receiver can be told to fail or hold requests.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers import free_port


async def eventually(
    probe: Callable[[], Any], *, within: float = 8.0, what: str = "condition"
) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.02)


def signature_ok(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does: recompute the HMAC of the raw body and compare."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class Hit(msgspec.Struct, kw_only=True):
    """One request the receiver got, and the status it answered (None: still held)."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    status: int | None = None

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = msgspec.json.decode(self.body)
        return decoded


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every request.

    ``fail_first``: answer 500 to that many requests first. ``fail_all``: answer 500.
    ``hold``: keep requests open until ``release()``, then answer 503 (the sender may
    be gone by then: such a request never counts as delivered).
    """

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.fail_first = 0
        self.fail_all = False
        self.hold = False
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hit = Hit(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with receiver._lock:
                    receiver.hits.append(hit)
                    held = receiver.hold
                    failing = receiver.fail_all or receiver.fail_first > 0
                    receiver.fail_first = max(0, receiver.fail_first - 1)
                if held:
                    receiver._released.wait(10)
                hit.status = 503 if held else 500 if failing else 200
                self.send_response(hit.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # the default 5 drops SYNs of a burst: 1 s stalls

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a held request whose sender went away: expected

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        # shutdown() waits for the serve loop to look up: every 0.5 s by default, which
        # every test using a receiver waited out at its end.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        """Answer the held requests (503) and hold no more."""
        with self._lock:
            self.hold = False
        self._released.set()

    def ok(self, path: str | None = None) -> list[Hit]:
        """Requests answered 2xx (delivered), optionally only those to ``path``."""
        with self._lock:
            return [h for h in self.hits if h.status == 200 and path in (None, h.path)]

    def open(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.status is None]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.authenticated: list[bool] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        self.authenticated.append(bool(session.authenticated))
        return "250 OK"


class MailSink:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message. It offers AUTH
    (``user``/``password``, plain text: loopback only) and notes whether each message
    came from a logged-in session. (Requiring AUTH without TLS makes aiosmtpd warn.)"""

    user = "alerts"
    password = "s3cret:pw"  # a ':' to prove the URL's password is unquoted

    def __init__(self) -> None:
        self._inbox = _Inbox()
        self.port = free_port()
        self._controller = Controller(
            self._inbox,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_required=False,
            auth_require_tls=False,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (self.user, self.password)
        return AuthResult(success=ok)

    @property
    def url(self) -> str:
        return f"smtp://{self.user}:s3cret%3Apw@127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self._inbox.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return list(self._inbox.envelopes)

    @property
    def authenticated(self) -> list[bool]:
        return list(self._inbox.authenticated)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


@contextmanager
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
