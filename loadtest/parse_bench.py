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


def _bodies(codes: list[str]) -> dict[str, tuple[str, Callable[[], bytes]]]:
    return {
        "plain, one per line": ("text/plain", lambda: "\n".join(codes).encode()),
        "plain, ', ' separated": ("text/plain", lambda: ", ".join(codes).encode()),
        "plain, CRLF": ("text/plain", lambda: "\r\n".join(codes).encode()),
        "csv, one column + header": (
            "text/csv",
            lambda: ("code\n" + "\n".join(codes) + "\n").encode(),
        ),
        "csv, 3 columns + header": (
            "text/csv",
            lambda: (
                "code,batch,note\n" + "".join(f"{c},7,spring promo\n" for c in codes)
            ).encode(),
        ),
        "csv, all fields quoted": (
            "text/csv",
            lambda: "".join(f'"{c}","7","spring promo"\r\n' for c in codes).encode(),
        ),
        "csv, quoted, comma in col 3": (
            "text/csv",
            lambda: ("".join(f'"{c}","7","promo, spring"\r\n' for c in codes)).encode(),
        ),
        "json": ("application/json", lambda: json.dumps({"codes": codes}).encode()),
        "plain, non-ASCII codes": (
            "text/plain",
            lambda: "\n".join("Ä" + c[1:] for c in codes).encode(),
        ),
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
    for name, (content_type, build) in _bodies(codes).items():
        body = build()
        best = min(_run(content_type, body) for _ in range(3))
        seconds, got = best
        assert got == count, (name, got, count)
        print(
            f"{name:28} {len(body) / 1e6:7.1f} MB  {seconds:6.3f} s"
            f"  {count / seconds / 1e6:6.2f} M codes/s  {len(body) / seconds / 1e6:6.0f} MB/s"
        )


if __name__ == "__main__":
    main()
