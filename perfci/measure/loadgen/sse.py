"""Incremental server-sent-events parser for OpenAI-compatible streams.

Reads arrive cut anywhere (mid-line, between `\\r` and `\\n`); `feed` keeps the unfinished tail and returns
the `data:` payloads whose lines are complete. Each `data:` line is its own payload, rather than joining the
data lines of one event at the blank line as the SSE spec does: OpenAI-compatible servers put one JSON
object on one line per event, and yielding at the line end lets the caller stamp a chunk as soon as its
line is whole. Comments (`:`), blank lines, other fields (`event:`, `id:`, `retry:`) and empty payloads are
skipped; the first line of an unknown field is kept in `foreign` (a body that is not an event stream).
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")
_FIELDS = frozenset((b"", b"data", b"event", b"id", b"retry"))  # b"": a comment line (":…")


class SSEParser:
    __slots__ = ("_tail", "foreign")

    def __init__(self) -> None:
        self._tail = b""
        self.foreign: bytes | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Payloads of the `data:` lines completed by `data`, in order, without the `data:` prefix."""
        buf = self._tail + data if self._tail else data
        lines = _LINE_END.split(buf)
        # The last piece has no line end yet. A trailing lone `\r` already ended its line; the `\n` that may
        # follow in the next read then makes an empty line, which is skipped.
        self._tail = lines.pop()
        payloads = []
        for line in lines:
            if line.startswith(b"data:"):
                payload = line[6:] if line[5:6] == b" " else line[5:]
                if payload:
                    payloads.append(payload)
            elif line and self.foreign is None and line.partition(b":")[0] not in _FIELDS:
                self.foreign = line[:80]
        return payloads
