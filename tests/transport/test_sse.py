"""The SSE decoder: events out of bytes however the chunks fall."""

from __future__ import annotations

import random

from llmgather.transport.sse import SSEDecoder

STREAM = (
    b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
    b": a comment\n\ndata: line one\ndata: line two\n\n"
    b"data: caf\xc3\xa9\r\rdata:no space\n\n"
)
EXPECTED = [
    ("message_start", '{"a": 1}'),
    ("message", "line one\nline two"),
    ("message", "caf\u00e9"),
    ("message", "no space"),
]


def test_any_chunking_gives_the_same_events() -> None:
    rng = random.Random(3)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(0, 12)))
        decoder = SSEDecoder()
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(STREAM)], strict=True):
            events += decoder.feed(STREAM[start:end])
        events += decoder.flush()
        assert [(e.event, e.data) for e in events] == EXPECTED, cuts


def test_an_event_complete_before_a_trailing_cr_is_not_held_back() -> None:
    decoder = SSEDecoder()
    assert [e.data for e in decoder.feed(b"data: a\n\ndata: b\r")] == ["a"]
    assert [e.data for e in decoder.feed(b"\n\r\n")] == ["b"]
