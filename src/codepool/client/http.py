"""The HTTP client of the command line: one httpx.Client for one command.

Answers are decoded with the service's own msgspec Structs (codepool.models), errors
from the API's one error shape into ``ApiError``; each failure knows its exit code
(the table is in docs/cli.md and ``Exit``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from codepool import __version__
from codepool.models import ErrorOut
from codepool.settings import Settings

T = TypeVar("T")

# A command waits this long to connect and for an ordinary answer. Uploads and exports
# wait for the server as long as it takes (a 20M-code commit is not instant).
TIMEOUT = 30.0


class Exit(IntEnum):
    """What a command's exit status means (docs/cli.md#exit-codes)."""

    OK = 0
    API_ERROR = 1  # the service refused the request (4xx other than below)
    USAGE = 2  # bad arguments, unreadable file, no key or project (argparse uses 2 too)
    AUTH = 3  # 401 unauthorized, 403 forbidden
    NOT_FOUND = 4  # 404: no such project, pool, reward, code, key...
    UNAVAILABLE = 5  # 5xx, the service unreachable, timed out, or an answer not understood
    NO = 6  # the request worked and the answer is no: `validate` of a code not valid


class CliError(Exception):
    """A failure the command reports as ``error: <code>: <message>`` and exits with."""

    def __init__(self, code: str, message: str, exit_code: Exit) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code

    def line(self) -> str:
        return f"error: {self.code}: {self.message}"


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__("usage", message, Exit.USAGE)


class ApiError(CliError):
    """The service answered with an error (its status, code, message and details)."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any]) -> None:
        super().__init__(code, message, _exit_for(status))
        self.status = status
        self.details = dict(details)

    def line(self) -> str:
        """The error line, with the details (which codes are bad, and where) on it."""
        if not self.details:
            return super().line()
        return f"{super().line()} {msgspec.json.encode(self.details).decode()}"


def _exit_for(status: int) -> Exit:
    if status in {401, 403}:
        return Exit.AUTH
    if status == 404:
        return Exit.NOT_FOUND
    if status >= 500:
        return Exit.UNAVAILABLE
    return Exit.API_ERROR


def unavailable(message: str) -> CliError:
    return CliError("unavailable", message, Exit.UNAVAILABLE)


_error_decoder = msgspec.json.Decoder(ErrorOut)


def error_from(response: httpx.Response) -> ApiError:
    """The ApiError of an error answer (read in full: error bodies are small)."""
    try:
        body = _error_decoder.decode(response.content).error
    except msgspec.DecodeError:
        # Not codepool's shape: a proxy or another service answered.
        text = " ".join(response.text.split())[:200] or response.reason_phrase
        return ApiError(response.status_code, f"http_{response.status_code}", text, {})
    return ApiError(response.status_code, body.code, body.message, body.details)


def read_key(settings: Settings, key_file: Path | None) -> str:
    """The bearer key: the first line of ``key_file``, else CODEPOOL_API_KEY."""
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read the key file {key_file}: {exc.strerror}") from exc
        if not key:
            raise UsageError(f"the key file {key_file} is empty")
        return key
    if not settings.api_key:
        raise UsageError("no API key: set CODEPOOL_API_KEY or give --key-file FILE")
    return settings.api_key


def segment(value: str) -> str:
    """``value`` as one path segment (ids are URL-safe; user ids and the like may not be)."""
    return quote(value, safe="")


class Api:
    """The service at ``url``, called with ``key``; use as a context manager."""

    def __init__(self, url: str, key: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        # httpx logs every request at INFO; a command's output is its own.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._client = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Bearer {key}",
                "User-Agent": f"codepool-cli/{__version__}",
            },
            timeout=TIMEOUT,
            transport=transport,  # tests answer without a server
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def call(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        body: object = None,
        params: Mapping[str, str | int | float] | None = None,
        headers: Mapping[str, str] | None = None,
        wait: float | None = TIMEOUT,
    ) -> T:
        """One JSON request; ``answer`` is the Struct (or list type) the answer decodes to.
        ``wait``: seconds to wait for the answer (None: as long as it takes)."""
        content = None if body is None else msgspec.json.encode(body)
        all_headers = dict(headers or {})
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        with self._transport_errors():
            response = self._client.request(
                method,
                path,
                content=content,
                params=params,
                headers=all_headers,
                timeout=httpx.Timeout(TIMEOUT, read=wait),
            )
        return self.decode(response, answer)

    def delete(self, path: str) -> None:
        self.empty("DELETE", path)

    def empty(self, method: str, path: str) -> None:
        """A request without a body whose answer has none either (204)."""
        with self._transport_errors():
            response = self._client.request(method, path)
        if response.is_error:
            raise error_from(response)

    def send(
        self,
        path: str,
        chunks: Iterable[bytes],
        answer: type[T],
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> T:
        """POST a streamed body (an upload): ``chunks`` are sent as they come."""
        with self._transport_errors():
            response = self._client.post(
                path,
                content=chunks,
                headers=headers,
                params=params,
                timeout=httpx.Timeout(TIMEOUT, read=None, write=None),
            )
        return self.decode(response, answer)

    @contextlib.contextmanager
    def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Response]:
        """GET with the answer's body streamed (an export); error answers raise."""
        with (
            self._transport_errors(),
            self._client.stream(
                "GET", path, params=params, timeout=httpx.Timeout(TIMEOUT, read=None)
            ) as response,
        ):
            if response.is_error:
                response.read()
                raise error_from(response)
            yield response

    def decode(self, response: httpx.Response, answer: type[T]) -> T:
        if response.is_error:
            raise error_from(response)
        try:
            return msgspec.json.decode(response.content, type=answer)
        except msgspec.DecodeError as exc:
            raise unavailable(
                f"{self.url} answered {response.status_code} with something this "
                f"codepool {__version__} does not understand: {exc}"
            ) from exc

    @contextlib.contextmanager
    def _transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise unavailable(f"{self.url} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise unavailable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
