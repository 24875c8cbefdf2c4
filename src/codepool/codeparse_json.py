"""The ``application/json`` upload parser: ``{"codes": [...]}`` through ijson's C backend."""

from __future__ import annotations

from typing import Any

import ijson

from codepool.codecheck import CODE_BYTES_NL, MAX_CODE_LENGTH
from codepool.codeparse_base import BaseParser
from codepool.errors import BadRequest, CodepoolError, invalid_json


class JsonParser(BaseParser):
    """``application/json``: exactly ``{"codes": [str, ...]}``, strings taken as they are."""

    def __init__(self) -> None:
        super().__init__()
        self._events: list[tuple[str, str, Any]] = ijson.sendable_list()
        self._coro = ijson.parse_coro(self._events)
        self._position = 0  # array index of the next item, for messages
        self._state = "start"  # start -> object -> key -> array -> after -> done
        self._blank = True  # nothing but whitespace so far

    def _feed(self, chunk: bytes) -> list[bytes]:
        if self._blank and chunk.strip():
            self._blank = False
        try:
            self._coro.send(chunk)
        except ijson.JSONError as exc:
            raise _malformed(exc) from None
        return self._drain()

    def _finish(self) -> list[bytes]:
        if self._blank:
            raise BadRequest('the body is empty; expected {"codes": [...]}')
        try:
            self._coro.close()
        except ijson.JSONError as exc:
            raise _malformed(exc) from None
        codes = self._drain()
        if self._state != "done":
            raise BadRequest('malformed JSON: the body must be {"codes": [...]}')
        return codes

    def _drain(self) -> list[bytes]:
        events = self._events
        if not events:
            return []
        strings: list[str] = [v for p, e, v in events if e == "string" and p == "codes.item"]
        if len(strings) != len(events):  # the few events that are not array items
            strings = []
            for prefix, event, value in events:
                if prefix == "codes.item" and event == "string":
                    strings.append(value)
                else:
                    self._structure(prefix, event, value, self._position + len(strings))
        del events[:]
        return self._codes(strings)

    def _structure(self, prefix: str, event: str, value: Any, position: int) -> None:
        """Follow the one allowed shape; anything else is a 400."""
        state = self._state
        if prefix == "codes.item":
            raise BadRequest(f"codes[{position}] is not a string", index=position)
        if prefix == "" and event == "start_map" and state == "start":
            self._state = "object"
        elif prefix == "" and event == "map_key" and state in ("object", "after"):
            if value != "codes":
                raise BadRequest(
                    f'unexpected key {value!r}; the body must be {{"codes": [...]}}', key=value
                )
            if state == "after":
                raise BadRequest('duplicate key "codes"', key=value)
            self._state = "key"
        elif prefix == "codes" and event == "start_array" and state == "key":
            self._state = "array"
        elif prefix == "codes" and event == "end_array" and state == "array":
            self._state = "after"
        elif prefix == "" and event == "end_map" and state in ("object", "after"):
            if state == "object":
                raise BadRequest('missing key "codes"; the body must be {"codes": [...]}')
            self._state = "done"
        elif prefix == "codes":
            raise BadRequest('"codes" must be an array of strings')
        else:
            raise BadRequest('the body must be a JSON object {"codes": [...]}')

    def _codes(self, strings: list[str]) -> list[bytes]:
        self._position += len(strings)
        strings = list(filter(None, strings))  # "" is an empty entry, ignored as elsewhere
        if not strings:
            return []
        joined = "\n".join(strings)
        if joined.isascii() and joined.count("\n") == len(strings) - 1:
            raw = joined.encode()
            if not raw.translate(None, CODE_BYTES_NL):
                codes = raw.split(b"\n")
                if max(map(len, codes)) <= MAX_CODE_LENGTH:
                    self._entries += len(codes)
                    return codes
        codes = []
        for string in strings:
            # surrogatepass: a lone surrogate becomes bytes that fail as invalid_utf8
            self._check(string.encode("utf-8", "surrogatepass"), codes, None, 0)
        return codes


def _malformed(exc: Exception) -> CodepoolError:
    detail = exc.args[0] if exc.args else str(exc)
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    first_line = str(detail).strip().splitlines()[0] if str(detail).strip() else "invalid JSON"
    return invalid_json(first_line)
