"""HTTP limits of ``codepool serve`` under uvicorn: header size, header deadline.

uvicorn's httptools protocol has neither (its ``h11_max_incomplete_event_size`` only
applies to h11, which is several times slower here): a 64 MB header block was read and
parsed, and a client trickling header bytes held its connection for minutes. This
protocol adds both around the parser, and nothing on a request's path once its headers
are complete, so a normal request pays one comparison per received chunk:

- the bytes of a request up to the end of its headers are counted; past
  ``max_header_bytes`` the client gets 431 in the one error shape and the connection is
  closed (the parser is fed only up to the limit, so the size is exact);
- a connection whose request headers are not complete ``header_timeout`` seconds after
  it opened, or after the first byte of its next request arrived, is closed (one timer
  per connection checks it).

Keep-alive and the concurrency cap are uvicorn's own (``timeout_keep_alive``,
``limit_concurrency``); the cap's 503 is answered in the one error shape
(``server_busy``, ``Retry-After: 1``) instead of uvicorn's plain-text one. granian has
the same limits built in (workers.py sets them).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from codepool import errors

_BUSY = errors.ServerBusy(retry_after=1)
_BUSY_BODY = msgspec.json.encode(errors.shape(_BUSY))
_BUSY_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BUSY_BODY)).encode()),
    *((k.lower().encode(), v.encode()) for k, v in errors.headers(_BUSY).items()),
    (b"connection", b"close"),
]


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """What a request past ``limit_concurrency`` runs instead of the app."""
    await send({"type": "http.response.start", "status": 503, "headers": _BUSY_HEADERS})
    await send({"type": "http.response.body", "body": _BUSY_BODY})


# uvicorn's protocol runs its module's ``service_unavailable`` (a plain-text 503) past
# the cap, chosen inside on_headers_complete; naming ours there is the one hook short
# of copying that method. Only `codepool serve` imports this module.
httptools_impl.service_unavailable = _busy  # type: ignore[attr-defined]


class HttpLimits(msgspec.Struct, frozen=True):
    max_header_bytes: int
    header_timeout: float


# The base class's callbacks, called directly: cheaper than super() on every request.
_data_received = HttpToolsProtocol.data_received
_on_headers_complete = HttpToolsProtocol.on_headers_complete
_on_message_complete = HttpToolsProtocol.on_message_complete
_IN_BODY = -1  # _room while the current request's headers are complete


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size limit and a header deadline."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        # Bytes the current request's headers may still take; _IN_BODY once they are
        # complete (what arrives then is body, up to the message's end).
        self._room = limits.max_header_bytes
        self._started = 0.0  # loop time the current request's headers began; 0 = not yet
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # An idle new connection must send its headers in time too.
        self._started = self.loop.time()
        self._deadline = self.loop.call_later(self._limits.header_timeout, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        room = self._room
        if room == _IN_BODY:
            _data_received(self, data)
            return
        if not self._started:  # the first byte of the next request on this connection
            self._started = self.loop.time()
        if len(data) <= room:
            # Set before feeding: the callbacks the parser runs may set it again.
            self._room = room - len(data)
            _data_received(self, data)
            return
        # Feed what fits: if the headers end inside it, the rest is body or the next
        # request (whose headers are limited in turn); if not, they are too large.
        self._room = 0
        _data_received(self, data[:room])
        if self._room == 0:  # neither on_headers_complete nor on_message_complete ran
            if not self.transport.is_closing():
                self._refuse()
            return
        self.data_received(data[room:])

    def on_headers_complete(self) -> None:
        self._room = _IN_BODY
        _on_headers_complete(self)

    def on_message_complete(self) -> None:
        _on_message_complete(self)
        # Whatever arrives next starts the next request's headers (and its clock; an
        # idle keep-alive connection is uvicorn's timeout_keep_alive's business).
        self._room = self._limits.max_header_bytes
        self._started = 0.0

    def _check(self) -> None:
        """One timer per connection, not per request (a timer per request cost /healthz
        a few percent): fires every header_timeout, closes a connection whose current
        request's headers are late, else sleeps until that request's deadline."""
        self._deadline = None
        if self.transport.is_closing():
            return
        timeout = self._limits.header_timeout
        waited = self.loop.time() - self._started if self._started else 0.0
        awaiting = self._room != _IN_BODY
        if awaiting and self._started and waited >= timeout:
            self.transport.close()
            return
        delay = timeout - waited if awaiting and self._started else timeout
        self._deadline = self.loop.call_later(delay, self._check)

    def _refuse(self) -> None:
        err = errors.HeadersTooLarge(limit=self._limits.max_header_bytes)
        body = msgspec.json.encode(errors.shape(err))
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()
