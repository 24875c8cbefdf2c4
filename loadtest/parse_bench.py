"""Parse rate of codepool.codeparse per format: ``python loadtest/parse_bench.py [codes]``.

Builds each body in memory (so only parsing is timed), feeds it in 64 KiB chunks like a
network read would, and prints codes per second (best of three runs, one core).
"""

from __future__ import annotations

import json
import random
import string
import sys
import time
from collections.abc import Callable

from codepool.codeparse import parser_for

CHUNK = 64 * 1024


def _codes(count: int, length: int = 10) -> list[str]:
    rng = random.Random(42)
    alphabet = string.ascii_uppercase + string.digits
    # A pool of distinct codes repeated keeps generation fast; the parser does not care.
    pool = ["".join(rng.choices(alphabet, k=length)) for _ in range(min(count, 100_000))]
    return [pool[i % len(pool)] for i in range(count)]


def _plain_lines(codes: list[str]) -> bytes:
    return "\n".join(codes).encode()


def _plain_commas(codes: list[str]) -> bytes:
    return ", ".join(codes).encode()


def _plain_crlf(codes: list[str]) -> bytes:
    return "\r\n".join(codes).encode()


def _plain_non_ascii(codes: list[str]) -> bytes:
    return "\n".join("Ä" + c[1:] for c in codes).encode()


def _csv_one_column(codes: list[str]) -> bytes:
    return ("code\n" + "\n".join(codes) + "\n").encode()


def _csv_three_columns(codes: list[str]) -> bytes:
    return ("code,batch,note\n" + "".join(f"{c},7,spring promo\n" for c in codes)).encode()


def _csv_quoted(codes: list[str]) -> bytes:
    return "".join(f'"{c}","7","spring promo"\r\n' for c in codes).encode()


def _csv_quoted_comma(codes: list[str]) -> bytes:
    # A quoted comma in another column: the block fast path declines, rows are parsed one
    # by one.
    return "".join(f'"{c}","7","promo, spring"\r\n' for c in codes).encode()


def _json(codes: list[str]) -> bytes:
    return json.dumps({"codes": codes}).encode()


BODIES: dict[str, tuple[str, Callable[[list[str]], bytes]]] = {
    "plain, one per line": ("text/plain", _plain_lines),
    "plain, ', ' separated": ("text/plain", _plain_commas),
    "plain, CRLF": ("text/plain", _plain_crlf),
    "plain, non-ASCII codes": ("text/plain", _plain_non_ascii),
    "csv, one column + header": ("text/csv", _csv_one_column),
    "csv, 3 columns + header": ("text/csv", _csv_three_columns),
    "csv, all fields quoted": ("text/csv", _csv_quoted),
    "csv, quoted, comma in col 3": ("text/csv", _csv_quoted_comma),
    "json": ("application/json", _json),
}


def _run(content_type: str, body: bytes) -> tuple[float, int]:
    parser = parser_for(content_type)
    view = memoryview(body)
    got = 0
    start = time.perf_counter()
    for offset in range(0, len(body), CHUNK):
        got += len(parser.feed(bytes(view[offset : offset + CHUNK])))
    got += len(parser.close())
    return time.perf_counter() - start, got


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
    codes = _codes(count)
    for name, (content_type, build) in BODIES.items():
        body = build(codes)
        best = min(_run(content_type, body) for _ in range(3))
        seconds, got = best
        assert got == count, (name, got, count)
        print(
            f"{name:28} {len(body) / 1e6:7.1f} MB  {seconds:6.3f} s"
            f"  {count / seconds / 1e6:6.2f} M codes/s  {len(body) / seconds / 1e6:6.0f} MB/s"
        )


if __name__ == "__main__":
    main()
