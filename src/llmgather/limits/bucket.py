"""A token bucket as pure arithmetic over a clock reading: no I/O, no sleeping.

Both sides of the wire use it: the client limiter (which waits until a reservation fits) and the
simulator (which answers 429 when it does not), so the two agree on what "within the limit" means.

A reservation larger than the bucket's capacity is admitted when the bucket is full and drives
it into debt; otherwise one large request could never be sent under a small per-second burst.
"""

from __future__ import annotations


class TokenBucket:
    """`rate` units per second, holding at most `capacity`; starts full."""

    __slots__ = ("_level", "_updated", "capacity", "rate")

    def __init__(self, *, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self._level = capacity
        self._updated = now

    @classmethod
    def per_minute(cls, limit: float, *, burst_seconds: float, now: float) -> TokenBucket:
        """A bucket for a per-minute limit that allows `burst_seconds` worth of units at once."""
        rate = limit / 60.0
        return cls(rate=rate, capacity=max(1.0, rate * burst_seconds), now=now)

    def level(self, now: float) -> float:
        self._refill(now)
        return self._level

    def wait_time(self, now: float, amount: float) -> float:
        """Seconds until `amount` can be taken (0.0 if it can be taken now)."""
        self._refill(now)
        needed = min(amount, self.capacity)
        if self._level >= needed:
            return 0.0
        return (needed - self._level) / self.rate

    def take(self, now: float, amount: float) -> None:
        self._refill(now)
        self._level -= amount

    def try_take(self, now: float, amount: float) -> float:
        """Take `amount` if it fits and return 0.0; else take nothing and return the wait."""
        wait = self.wait_time(now, amount)
        if wait == 0.0:
            self._level -= amount
        return wait

    def give_back(self, now: float, amount: float) -> None:
        """Return an over-reservation (or, with a negative amount, charge an under-estimate)."""
        self._refill(now)
        self._level = min(self.capacity, self._level + amount)

    def time_to_full(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (self.capacity - self._level) / self.rate)

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(self.capacity, self._level + elapsed * self.rate)
            self._updated = now

    def __repr__(self) -> str:
        return f"<TokenBucket level={self._level:.2f}/{self.capacity:.2f} rate={self.rate:.3f}/s>"
