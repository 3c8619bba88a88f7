"""The concurrency cap, lowered while streams keep being cut off and raised back after clean
answers (AIMD: additive increase, multiplicative decrease), within [1, the configured cap].

Some servers cut the running stream whenever a new request arrives (llama-cpp-python's server
does): at any concurrency above one, retries cut each other off and nearly every item fails.
A stream cut now and then (a flaky network) must not cost the pool its concurrency, so the cap
is judged per round (`max(cap, MIN_ROUND)` finished streams sent under the same cap): it halves
once at least two of the round's streams were cut and the cut ones are no fewer than the clean
ones, and it grows by one after a round with at most one cut. Outcomes of permits granted under
an earlier cap (`wave`) belong to a round that is over, and count for nothing.
"""

from __future__ import annotations

MIN_ROUND = 8


class ConcurrencyCap:
    __slots__ = ("_clean", "_cut", "current", "maximum", "wave")

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.current = maximum
        self.wave = 0  # bumped at each change, so a round only counts its own permits
        self._cut = 0
        self._clean = 0

    def truncated(self, wave: int) -> bool:
        """A stream granted in `wave` was cut off; True if the cap went down."""
        if wave != self.wave:
            return False
        self._cut += 1
        if self._cut >= 2 and self._cut >= self._clean and self.current > 1:
            self._change(max(1, self.current // 2))
            return True
        self._end_round_if_full()
        return False

    def succeeded(self, wave: int) -> bool:
        """A request granted in `wave` was answered in full; True if the cap went up."""
        if wave != self.wave:
            return False
        self._clean += 1
        if self._cut + self._clean < max(self.current, MIN_ROUND):
            return False
        if self._cut <= 1 and self.current < self.maximum:
            self._change(self.current + 1)
            return True
        self._end_round_if_full()
        return False

    def _end_round_if_full(self) -> None:
        if self._cut + self._clean >= max(self.current, MIN_ROUND):
            self._change(self.current)

    def _change(self, cap: int) -> None:
        self.current = cap
        self.wave += 1
        self._cut = self._clean = 0

    def __repr__(self) -> str:
        return f"<ConcurrencyCap {self.current}/{self.maximum} cut={self._cut} clean={self._clean}>"
