"""A stream a user's call returned (an SDK's `stream=True`), holding the call's permit until
it is read: the answer is still on the wire while it is, so its concurrency slot stays taken.

    client.call(create, stream=True) ─▶ HeldStream ─▶ read to its end ─▶ permit given back
                                                    ─▶ failed, closed  ─▶ permit given back
                                                    ─▶ dropped unread  ─▶ given back once
                                                                          collected

Given back as "ok" once the stream ended with its terminal event, as "truncated" when an SDK's
stream ended without one (a server cut it off: the SDKs end such a stream quietly) or its
connection broke, and as "failed" otherwise; with the usage the stream's events reported (OpenAI's last chunk with
`include_usage`, Anthropic's `message_start` and `message_delta`, Gemini's `usage_metadata`),
or, if none did, with the reservation standing, as for an answer whose usage is unknown.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

from llmgather._attempt import Release
from llmgather._errors import APIConnectionError, RequestTimeoutError
from llmgather._sdk_errors import error_from_sdk, sdk_family, usage_from_sdk
from llmgather._types import Usage
from llmgather.limits.base import Ending


class HeldStream:
    """The stream, iterated, closed (`close()`, `aclose()`) and used as an async context
    manager as the SDK's own is; every other attribute (`response`…) is the SDK stream's."""

    __slots__ = (
        "_finished", "_input", "_iterator", "_loop", "_output", "_release", "_sdk_events", "_stream",
    )  # fmt: skip

    def __init__(self, stream: Any) -> None:
        self._release: Release | None = None
        self._stream = stream
        # The SDKs' streams are their own iterators; a mere async iterable gives one.
        self._iterator: AsyncIterator[Any] = (
            stream if hasattr(stream, "__anext__") else aiter(stream)
        )
        self._loop = asyncio.get_running_loop()
        self._input = 0
        self._output = 0
        self._sdk_events = False  # an official SDK's events, which end with a terminal one
        self._finished = False  # the terminal event came

    def keep(self, release: Release) -> None:
        """Takes the permit's release: called once the stream is read, closed or collected."""
        self._release = release

    def __aiter__(self) -> HeldStream:
        return self

    async def __anext__(self) -> Any:
        try:
            event = await anext(self._iterator)
        except StopAsyncIteration:
            await self._give_back("truncated" if self._sdk_events and not self._finished else "ok")
            raise
        except BaseException as error:
            await self._give_back(_ending_of(error))
            raise
        self._count(event)
        return event

    async def close(self) -> None:
        """Closes the SDK's stream (its connection) and gives the permit back."""
        try:
            close = getattr(self._stream, "close", None) or getattr(self._stream, "aclose", None)
            if close is not None:
                closing = close()
                if inspect.isawaitable(closing):
                    await closing
        finally:
            await self._give_back("ok")  # the reader chose to stop: the server did no wrong

    aclose = close

    async def __aenter__(self) -> HeldStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        if name in HeldStream.__slots__:
            raise AttributeError(name)  # not set yet: never the SDK stream's
        return getattr(self._stream, name)

    def __repr__(self) -> str:
        return f"<HeldStream of {self._stream!r}>"

    def __del__(self) -> None:
        # Dropped unread: the permit would be held for good, starving every later call.
        release, self._release = self._release, None
        if release is not None and not self._loop.is_closed():
            usage = self._usage()
            self._loop.call_soon_threadsafe(_give_back_later, release, usage)

    def _count(self, event: Any) -> None:
        if not self._sdk_events:
            self._sdk_events = sdk_family(type(event)) is not None
        self._finished = self._finished or _is_terminal(event)
        # Per field, the largest count any event reports: each SDK reports running totals, in
        # one event (OpenAI), over two (Anthropic: input at the start, output at the end), or in
        # every one (Gemini).
        for source in (event, getattr(event, "message", None)):
            usage = usage_from_sdk(source) if source is not None else None
            if usage is not None:
                self._input = max(self._input, usage.input_tokens)
                self._output = max(self._output, usage.output_tokens)
        # Anthropic's `message_delta` counts the output only (its input count is null).
        output = getattr(getattr(event, "usage", None), "output_tokens", None)
        if isinstance(output, int):
            self._output = max(self._output, output)

    def _usage(self) -> Usage | None:
        if self._input == 0 and self._output == 0:
            return None  # none reported: the reservation stands
        return Usage(self._input, self._output)

    async def _give_back(self, ending: Ending) -> None:
        release, self._release = self._release, None
        if release is not None:
            await release(self._usage(), ending)


_TERMINAL_TYPES = frozenset(
    # Anthropic's last event; the OpenAI Responses API's three ways to end.
    ("message_stop", "response.completed", "response.incomplete", "response.failed")
)


def _is_terminal(event: Any) -> bool:
    """Whether `event` ends an answer: a terminal event type, or a chat completion's choice or
    a Gemini candidate with its finish reason."""
    if getattr(event, "type", None) in _TERMINAL_TYPES:
        return True
    parts = getattr(event, "choices", None) or getattr(event, "candidates", None) or ()
    return any(getattr(part, "finish_reason", None) is not None for part in parts)


def _ending_of(error: BaseException) -> Ending:
    """How a stream that raised ended: cut off ("truncated": its connection broke or went
    silent), or anything else ("failed": an error event, the reader cancelled)."""
    if isinstance(error, Exception):
        if isinstance(error_from_sdk(error), APIConnectionError | RequestTimeoutError):
            return "truncated"
    return "failed"


def _give_back_later(release: Release, usage: Usage | None) -> None:
    # Unreferenced, yet not collected early: the loop holds the task until its first step
    # (a local limiter's release needs no more) and whatever it then awaits holds it after.
    asyncio.ensure_future(release(usage, "ok"))  # noqa: RUF006
