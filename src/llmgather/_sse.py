"""A sans-IO decoder of server-sent events: bytes in, (event, data) pairs out."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: str


class SSEDecoder:
    """Feed it chunks as they arrive; it returns the events completed so far.

    Lines may end in LF, CRLF or CR, and a chunk may end in the middle of a line or of a
    multi-byte character, so undecoded bytes are carried over to the next feed.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk
        events: list[SSEEvent] = []
        while True:
            end, skip = _line_end(self._buffer)
            if end < 0:
                break
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + skip :]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SSEEvent]:
        """Events left when the body ends without a final blank line."""
        events = self.feed(b"\n\n") if self._buffer or self._data else []
        self._buffer = b""
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def _line_end(buffer: bytes) -> tuple[int, int]:
    """Index of the first line terminator and its length, or (-1, 0)."""
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr < 0:
        return lf, 1
    if lf == cr + 1:
        return cr, 2
    if cr == len(buffer) - 1:
        return -1, 0  # a CR at the end may be half of a CRLF still to come
    if lf < 0 or cr < lf:
        return cr, 1
    return lf, 1
