"""Finding a key's limits when told none: slow start, then AIMD where nothing is announced.

Told no limit, the limiter knows nothing of the key's budget until the first answers come back,
and sending a whole concurrency's worth blind opens a job with a storm of 429s. So, as TCP does:

- **Slow start.** A first wave of `INITIAL_WINDOW` requests; each clean answer lets one more be
  in flight, so the window doubles every round trip, up to the concurrency cap. It ends when an
  answer announces a limit (the budgets pace the sends from then on) or when a 429 comes.
- **AIMD where nothing is announced** (Gemini, many OpenAI-compatible servers, gateways): the
  first 429 sets a requests-per-minute budget at `FIRST_DECREASE` of the rate being sent (slow
  start overshoots by up to twice the rate the server took). Over a short start that rate is
  mostly the server's burst, not its refill, so until a first clean stretch each new wave of
  429s halves it again; after that a wave multiplies it by `DECREASE`. Only a 429 to a request
  granted after the last change counts: one wave, one decrease. Each `INCREASE_EVERY` seconds
  without a 429, while that budget held sends back, it grows by `INCREASE_STEP` of itself, so a
  raised limit is found again. It stays within [`MIN_RPM`, `MAX_GROWTH` × the first rate].

A 429 says the server's budget is empty now, so the limiter starts each new rate empty too:
no burst into a server that has just refused one.

Pure arithmetic over clock readings, like the buckets: `LocalLimiter` feeds it and applies it.
"""

from __future__ import annotations

from collections import deque

INITIAL_WINDOW = 8
RATE_SPAN = 1.0  # seconds of grants the sending rate is measured over at the first 429
FIRST_DECREASE = 0.5
DECREASE = 0.85
INCREASE_EVERY = 2.0
INCREASE_STEP = 0.02
MIN_RPM = 1.0
MAX_GROWTH = 4.0


class LimitSearch:
    """The concurrency window of slow start and the requests-per-minute rate AIMD has found."""

    __slots__ = (
        "_bound",
        "_ceiling",
        "_changed_at",
        "_grants",
        "_maximum",
        "_settled",
        "found",
        "window",
    )

    def __init__(self, maximum: int, *, now: float) -> None:
        self._maximum = maximum
        self.window: int | None = min(INITIAL_WINDOW, maximum)  # None: open, nothing to find
        self.found: float | None = None  # requests per minute, once a 429 taught one
        self._ceiling = 0.0
        self._changed_at = now
        self._bound = False
        self._settled = False  # a clean stretch has followed the first 429
        self._grants: deque[float] = deque()  # recent grant times, until a rate is found

    @property
    def searching(self) -> bool:
        return self.window is not None or self.found is not None

    def granted(self, now: float) -> None:
        if self.window is None:
            return
        grants = self._grants
        grants.append(now)
        while grants[0] < now - RATE_SPAN:
            grants.popleft()

    def answered(self) -> bool:
        """A clean answer; True if the window grew (a waiter for a slot may go now)."""
        if self.window is None or self.window >= self._maximum:
            return False
        self.window += 1
        return True

    def held(self) -> None:
        """The found rate held a send back: it binds, so a clean stretch may raise it."""
        self._bound = True

    def announced(self) -> None:
        """An answer announced a limit: the budgets know better than any search."""
        self.window = None
        self.found = None
        self._grants.clear()

    def limited(self, now: float, granted_at: float) -> float | None:
        """A 429 while no limit is announced: the rate to pace at now, or None if unchanged
        (a 429 to a request sent before the last change belongs to a wave already counted)."""
        if granted_at < self._changed_at:
            return None
        if self.found is None:
            sent = max(len(self._grants), 1)
            span = min(RATE_SPAN, max(now - self._grants[0], 0.1)) if self._grants else RATE_SPAN
            rate = max(MIN_RPM, FIRST_DECREASE * 60.0 * sent / span)
            self._ceiling = MAX_GROWTH * rate
            self.window = None  # the rate paces from now on
            self._grants.clear()
        else:
            factor = DECREASE if self._settled else FIRST_DECREASE
            rate = max(MIN_RPM, self.found * factor)
        return self._change(rate, now)

    def clean(self, now: float) -> float | None:
        """A clean answer while pacing at a found rate: the raised rate, or None if unchanged."""
        if self.found is None or now - self._changed_at < INCREASE_EVERY:
            return None
        self._settled = True
        if not self._bound:
            return None
        step = max(1.0, INCREASE_STEP * self.found)
        return self._change(min(self._ceiling, self.found + step), now)

    def _change(self, rate: float, now: float) -> float:
        self.found = rate
        self._changed_at = now
        self._bound = False
        return rate

    def __repr__(self) -> str:
        found = "none" if self.found is None else f"{self.found:.1f}"
        return f"<LimitSearch window={self.window} found_rpm={found}>"
