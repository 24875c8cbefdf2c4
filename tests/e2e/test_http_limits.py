"""Server limits of a real `codepool serve` (issue 16), over raw sockets: header size
(431), a header deadline against slowloris, the concurrency cap (503)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

from tests.servers import ServeProcess, start_serve

pytestmark = pytest.mark.e2e

# Waited out three times: short, and with its +2 s slack still under uvicorn's 5 s keep-alive.
HEADER_TIMEOUT = 1.0


class Served(NamedTuple):
    kind: str  # the --server it runs
    server: ServeProcess


ENV = {
    "CODEPOOL_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
    "CODEPOOL_HTTP_MAX_HEADER_BYTES": str(32 * 1024),
    "CODEPOOL_HTTP_MAX_CONCURRENCY": "3",
}


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    with start_serve(data_dir, workers=1, env=ENV, asgi_server=request.param) as running:
        yield Served(request.param, running)


def _connect(served: Served) -> socket.socket:
    url = urlsplit(served.server.url)
    return socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _get(header: bytes = b"") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + header + b"\r\n"


def test_headers_within_the_limit_are_served(server: Served) -> None:
    with _connect(server) as sock:
        sock.sendall(_get(b"X-Pad: " + b"a" * 16_000 + b"\r\n"))
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


def test_headers_past_the_limit_get_431(server: Served) -> None:
    with _connect(server) as sock:
        sock.sendall(_get(b"X-Pad: " + b"a" * 40_000 + b"\r\n"))
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    if server.kind == "uvicorn":  # granian's 431 has no body
        body = answer.split(b"\r\n\r\n", 1)[1]
        assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_a_pipelined_request_cut_by_the_limit_is_served(server: Served) -> None:
    """One write: a request whose body ends just before the header limit, then a
    small pipelined request straddling it. Both are answered: the limit counts each
    request's headers from its own start, not from the first byte of the read."""
    body = b"b" * 32_700
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    second = _get(b"X-Pad: " + b"a" * 200 + b"\r\n")
    assert len(first) + len(body) < 32 * 1024 < len(first) + len(body) + len(second)
    with _connect(server) as sock:
        sock.sendall(first + body + second)
        answer = _read_all(sock)
    assert answer.count(b"HTTP/1.1 200") == 2, answer[:400]


def test_a_megabyte_header_is_refused_not_read(server: Served) -> None:
    """1 MB of Authorization: refused (431, or the connection cut while sending)."""
    answer = b""
    with _connect(server) as sock:
        try:
            sock.sendall(_get(b"Authorization: Bearer " + b"a" * (1 << 20) + b"\r\n"))
        except (ConnectionResetError, BrokenPipeError):
            pass  # cut while still sending: refused
        else:
            answer = _read_all(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    with _connect(server) as sock:  # and the server is fine
        sock.sendall(_get())
        assert _read_all(sock).startswith(b"HTTP/1.1 200")


def test_trickled_headers_are_cut_off_at_the_deadline(server: Served) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < HEADER_TIMEOUT + 5:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
                sock.settimeout(0.5)
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            else:
                # A 408 or similar answer before the close is fine too.
                closed = True
                break
        elapsed = time.monotonic() - started
    assert closed, "a connection trickling headers stayed open"
    assert elapsed < HEADER_TIMEOUT + 2, elapsed


def test_an_idle_connection_is_closed_at_the_deadline(server: Served) -> None:
    if server.kind == "granian":
        pytest.skip("granian's header timer starts at the first byte; its idle sockets wait")
    with _connect(server) as sock:
        started = time.monotonic()
        assert _read_all(sock) == b""
        elapsed = time.monotonic() - started
    assert elapsed < HEADER_TIMEOUT + 2, elapsed


def test_beyond_the_concurrency_cap_a_worker_answers_503(server: Served) -> None:
    if server.kind == "granian":
        pytest.skip("granian's backpressure queues requests past the cap instead of a 503")
    held = [_connect(server) for _ in range(3)]
    try:
        for sock in held:  # open, mid-request: they count against the cap
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        with _connect(server) as sock:
            sock.sendall(_get())
            answer = _read_all(sock)
    finally:
        for sock in held:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"retry-after: 1" in head.lower()
    assert json.loads(body)["error"]["code"] == "server_busy"
