"""Code files as upload bodies: their media type, their Idempotency-Key, their chunks.

A file is read twice, never held: once to hash it (which names its Idempotency-Key),
once streamed as the request body. Standard input cannot be read twice, so it is first
copied to a temporary file (on disk, in chunks). The key is derived from the content,
the pool and the options, so running the same command again (after a timeout, a
dropped connection, a Ctrl-C) gets the first answer back and never adds the codes a
second time; the service keeps a key's answer for CODEPOOL_IDEMPOTENCY_TTL (24 h).
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from codepool.client.http import UsageError
from codepool.client.progress import Transfer

CHUNK = 1 << 20
MEDIA_TYPES = {"text": "text/plain", "csv": "text/csv", "json": "application/json"}
_BY_SUFFIX = {".csv": "csv", ".json": "json", ".txt": "text"}


def format_of(name: str, given: str | None) -> str:
    """``--format``, else the file's extension (.csv, .json; anything else is text)."""
    if given is not None:
        return given
    return _BY_SUFFIX.get(Path(name).suffix.lower(), "text") if name != "-" else "text"


def count_codes(chunk: bytes, fmt: str) -> int:
    """About how many codes ``chunk`` holds (for the progress bar; the server counts)."""
    if fmt == "json":
        return chunk.count(b'"') // 2
    if fmt == "text":
        return chunk.count(b"\n") + chunk.count(b",")
    return chunk.count(b"\n")


@dataclass(frozen=True)
class Source:
    """One file to upload: where to read it, its size and its SHA-256."""

    name: str  # as given on the command line ("-" for stdin)
    path: Path
    size: int
    sha256: str

    @property
    def label(self) -> str:
        """How the progress bar names it."""
        return "stdin" if self.name == "-" else Path(self.name).name


@contextlib.contextmanager
def open_source(name: str, *, digest_needed: bool = True) -> Iterator[Source]:
    """``name`` ready to upload; stdin is copied to a temporary file that is removed after.
    Without ``digest_needed`` (a key was given) a file is not read beforehand."""
    if name != "-":
        path = Path(name)
        try:
            digest = _hash(path) if digest_needed else ""
            size = path.stat().st_size
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from exc
        yield Source(name, path, size, digest)
        return
    with tempfile.TemporaryDirectory(prefix="codepool-upload-") as folder:
        path = Path(folder) / "stdin"
        hasher = hashlib.sha256()
        with path.open("wb") as spool, Transfer("reading stdin", None) as progress:
            while chunk := sys.stdin.buffer.read(CHUNK):
                hasher.update(chunk)
                spool.write(chunk)
                progress.advance(len(chunk), 0)
        yield Source(name, path, path.stat().st_size, hasher.hexdigest())


def _hash(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def idempotency_key(source: Source, project: str, pool: str, media: str, duplicates: str) -> str:
    """The upload's Idempotency-Key: the same for the same content, pool and options."""
    scope = "\x1f".join((project, pool, media, duplicates, source.sha256))
    return "codepool-cli-upload-" + hashlib.sha256(scope.encode()).hexdigest()[:40]


def body(source: Source, fmt: str, progress: Transfer) -> Iterator[bytes]:
    """The file in chunks, counted into ``progress`` as they are handed to the socket."""
    with source.path.open("rb") as file:
        while chunk := file.read(CHUNK):
            if progress.shown:  # counting is for the bar only
                progress.advance(len(chunk), count_codes(chunk, fmt))
            yield chunk
    progress.describe(f"{source.label} (storing)")
