"""Server-side RPM and TPM limits: admit or refuse a request, then settle its token reservation.

The buckets are llmgather's own `TokenBucket`, so the simulator and the client limiter agree on
what "within the limit" means; the token estimate is llmgather's too, and the reservation is
settled to the real usage once the answer is complete (as Anthropic documents for its limits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from llmgather.limits.bucket import TokenBucket

LimitKind = Literal["requests", "tokens"]


@dataclass(frozen=True, slots=True)
class BucketState:
    """One limit as the rate-limit headers report it."""

    limit: int  # per minute
    remaining: int  # the minute's limit less what is used and not yet refilled
    reset_s: float  # seconds until the bucket is full again


@dataclass(frozen=True, slots=True)
class LimitState:
    requests: BucketState | None
    tokens: BucketState | None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted: which limit, the wait that would let it in, the state."""

    kind: LimitKind
    retry_after_s: float
    requested: int
    state: LimitState
    too_large: bool = False  # the request could never fit the per-minute token limit


class ServerLimits:
    """RPM and TPM buckets; either may be absent. Not thread-safe: one event loop owns it."""

    __slots__ = ("_clock", "_requests", "_tokens", "rpm", "tpm")

    def __init__(
        self,
        *,
        rpm: float | None,
        tpm: float | None,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        now = clock()
        self._clock = clock
        self.rpm = rpm
        self.tpm = tpm
        self._requests = (
            TokenBucket.per_minute(rpm, burst_seconds=burst_seconds, now=now) if rpm else None
        )
        self._tokens = (
            TokenBucket.per_minute(tpm, burst_seconds=burst_seconds, now=now) if tpm else None
        )

    def admit(self, estimate: int) -> Refusal | None:
        """Take one request and `estimate` tokens, or take nothing and say why (None = admitted)."""
        now = self._clock()
        requests, tokens = self._requests, self._tokens
        if tokens is not None and self.tpm is not None and estimate > self.tpm:
            return Refusal("tokens", 0.0, estimate, self.state(), too_large=True)
        if requests is not None:
            wait = requests.wait_time(now, 1)
            if wait > 0:
                return Refusal("requests", wait, 1, self.state())
        if tokens is not None:
            wait = tokens.try_take(now, estimate)
            if wait > 0:
                return Refusal("tokens", wait, estimate, self.state())
        if requests is not None:
            requests.take(now, 1)
        return None

    def settle(self, reserved: int, actual: int) -> None:
        """Give back what the reservation over-estimated (or charge what it under-estimated)."""
        if self._tokens is not None and reserved != actual:
            self._tokens.give_back(self._clock(), reserved - actual)

    def state(self) -> LimitState:
        now = self._clock()
        return LimitState(
            requests=_bucket_state(self._requests, self.rpm, now),
            tokens=_bucket_state(self._tokens, self.tpm, now),
        )


def _bucket_state(
    bucket: TokenBucket | None, limit: float | None, now: float
) -> BucketState | None:
    if bucket is None or limit is None:
        return None
    # The bucket holds only `burst_seconds` worth of the limit, so its level would make an idle
    # server at rpm=600 report 10 remaining of 600. What it is short of full (negative levels
    # included: a reservation larger than the bucket runs into debt) is what has been used.
    # The epsilon keeps the refill's float round-off from costing a whole unit.
    used = bucket.capacity - bucket.level(now)
    return BucketState(
        limit=int(limit),
        remaining=max(0, math.floor(limit - used + 1e-9)),
        reset_s=bucket.time_to_full(now),
    )
