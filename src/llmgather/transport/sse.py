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
        # bytes.splitlines splits on exactly SSE's terminators: LF, CRLF and CR.
        lines = (self._buffer + chunk).splitlines(keepends=True)
        # An unterminated last line, or one ending in a CR that may be half of a CRLF, waits.
        self._buffer = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        events: list[SSEEvent] = []
        for raw in lines:
            event = self._line(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
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
