"""The client-side limiter: a concurrency cap, requests per minute and tokens per minute.

It waits, it does not fail. A send first takes a concurrency slot, then one request from the RPM
bucket and its token estimate from the TPM bucket. Waiters queue FIFO behind one lock: only the
head of the queue sleeps, for exactly as long as the buckets need to refill (never polling), and
the rest wait on the lock. After the response, `release` settles the estimate against the real
usage. A 429 pauses everyone (`pause`) for the server's Retry-After period, or, when the
server gives none, for a cool-down that doubles while 429s keep coming (`back_off`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from llmgather._clock import Clock, SystemClock
from llmgather._config import Limits
from llmgather.limits.bucket import TokenBucket


@dataclass(frozen=True, slots=True)
class Permit:
    """A granted send: the tokens it reserved, to be settled on release."""

    tokens: int


class Limiter:
    def __init__(self, limits: Limits, *, clock: Clock | None = None) -> None:
        self.limits = limits
        self._clock = clock or SystemClock()
        now = self._clock.now()
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._gate = asyncio.Lock()
        self._requests = (
            TokenBucket.per_minute(limits.rpm, burst_seconds=limits.burst_seconds, now=now)
            if limits.rpm
            else None
        )
        self._tokens = (
            TokenBucket.per_minute(limits.tpm, burst_seconds=limits.burst_seconds, now=now)
            if limits.tpm
            else None
        )
        self._paused_until = 0.0
        self._backoff = 0.0
        self._in_flight = 0
        self._announced_rpm: float | None = None
        self._announced_tpm: float | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self, tokens: int) -> Permit:
        """Wait for a concurrency slot and for `tokens` and one request of rate budget."""
        await self._slots.acquire()
        try:
            async with self._gate:
                while (wait := self._wait_time(tokens)) > 0:
                    await self._clock.sleep(wait)
                now = self._clock.now()
                if self._requests:
                    self._requests.take(now, 1)
                if self._tokens:
                    self._tokens.take(now, tokens)
        except BaseException:
            self._slots.release()
            raise
        self._in_flight += 1
        return Permit(tokens)

    def release(self, permit: Permit, *, used_tokens: int | None) -> None:
        """Free the slot; settle the token reservation if the real usage is known.

        `used_tokens=None` keeps the whole reservation (the server may have counted it).
        """
        self._in_flight -= 1
        self._slots.release()
        if self._tokens and used_tokens is not None:
            self._tokens.give_back(self._clock.now(), permit.tokens - used_tokens)

    def adopt(self, *, rpm: float | None, tpm: float | None) -> None:
        """Use limits the server announced (x-ratelimit-limit-*) where the user set none.

        A client told nothing then paces itself from the first answer on, instead of learning
        the limit one 429 at a time.
        """
        now = self._clock.now()
        burst = self.limits.burst_seconds
        if rpm and self.limits.rpm is None and self._announced_rpm != rpm:
            self._announced_rpm = rpm
            self._requests = TokenBucket.per_minute(rpm, burst_seconds=burst, now=now)
        if tpm and self.limits.tpm is None and self._announced_tpm != tpm:
            self._announced_tpm = tpm
            self._tokens = TokenBucket.per_minute(tpm, burst_seconds=burst, now=now)

    def pause(self, seconds: float) -> None:
        """Hold every new send for `seconds` (a 429's Retry-After applies to the whole key)."""
        self._paused_until = max(self._paused_until, self._clock.now() + seconds)

    def back_off(self, base: float, cap: float) -> None:
        """A 429 that gave no Retry-After: hold every new send for a cool-down.

        The 429s of one wave (sent before the pause began, arriving while it lasts) count once;
        each 429 after a pause has ended doubles the next one, up to `cap`, until `succeeded`.
        """
        now = self._clock.now()
        if now < self._paused_until:
            return
        self._backoff = min(cap, self._backoff * 2) if self._backoff else base
        self._paused_until = now + self._backoff

    def succeeded(self) -> None:
        """An answer came back: the next 429 without a hint starts the cool-down afresh."""
        self._backoff = 0.0

    def _wait_time(self, tokens: int) -> float:
        now = self._clock.now()
        wait = self._paused_until - now
        if self._requests:
            wait = max(wait, self._requests.wait_time(now, 1))
        if self._tokens:
            wait = max(wait, self._tokens.wait_time(now, tokens))
        return wait

    def __repr__(self) -> str:
        return (
            f"<Limiter in_flight={self._in_flight}/{self.limits.concurrency} "
            f"rpm={self._requests!r} tpm={self._tokens!r}>"
        )
