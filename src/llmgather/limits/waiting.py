"""The head waiter's wait, for the limiters: until a time passes or an event ends it early.

Only the head of a limiter's queue waits, and for exactly as long as it must: a timer for what
time refills (a pause, a budget), a poke for what an event frees (a slot released, a
reservation settled below its estimate, a limit raised).
"""

from __future__ import annotations

import asyncio

from llmgather._clock import Clock


class Wakeup:
    __slots__ = ("_clock", "_wake")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._wake: asyncio.Future[None] | None = None

    async def poked(self) -> None:
        """Wait until `poke`."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def poked_or(self, seconds: float) -> None:
        """Wait until `poke` or for `seconds` on the clock, whichever comes first."""
        self._wake = wake = asyncio.get_running_loop().create_future()
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((timer, wake), return_when=asyncio.FIRST_COMPLETED)
            if timer.done():
                timer.result()  # a clock whose sleep failed fails the wait
        finally:
            timer.cancel()
            self._wake = None

    def poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
