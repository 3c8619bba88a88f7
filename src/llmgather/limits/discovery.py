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
  429s cuts it by the share of 429s at it, halving it at most and by `DECREASE` at least;
  after that a wave multiplies it by `DECREASE`. Only a 429 to a request
  granted after the last change counts: one wave, one decrease. Each `INCREASE_EVERY` seconds
  without a 429, while that budget held sends back, it grows by `INCREASE_STEP` of itself, so a
  raised limit is found again. It stays within [`MIN_RPM`, `MAX_GROWTH` × the first rate].

A 429 says the server's budget is empty now, so the limiter starts each new rate empty too:
no burst into a server that has just refused one.

**Noise is not a limit.** Some servers answer a share of requests with 429s whatever the rate
(a model overloaded for some requests, a gateway passing on an upstream's overload). A rate
limit is what slowing down cures; noise comes at the same share at any rate. So each request
counts toward the pace it was granted at, and after a decrease by `d` the 429 share at the new
pace is compared with `s`, the share at the latest higher paces pooled (once they saw
`NOISE_SAMPLE` requests): a limit would leave `max(0, 1 - (1 - s) / d)`, noise still `s`.
Where those differ by less than half (near a share of 100%) the decrease stands. Once
`NOISE_EVIDENCE` 429s at the new pace keep nearer `s` than to what a limit would leave (and
not far above `s`: a share that rose says the old pace was farther above a limit than its
few 429s told), they are noise: the pace is lifted (unpaced, as before the first 429), and
from then on only a share well above that noise floor (more than twice it, and `NOISE_MARGIN`
429s more) counts as a wave. The first decrease, out of the slow start, is always made: the
slow start sends at many rates, so there is no one share to compare with.

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
NOISE_EVIDENCE = 2  # 429s at a lowered pace, at the old share, that make them noise
NOISE_MARGIN = 3  # 429s above twice the noise floor before a share counts as a wave
NOISE_SAMPLE = 20  # requests sent at the paces before, before their share of 429s counts
MAX_CHAIN = 16  # the latest paces remembered
MAX_NOISE = 0.5


class _Level:
    """The requests granted at one pace, from `since`: how many, how many were answered, and
    how many of those with a 429."""

    __slots__ = ("answers", "granted", "limited", "pace", "since")

    def __init__(self, since: float, pace: float = 0.0) -> None:
        self.since = since
        self.pace = pace  # the found rate in force (0.0: none)
        self.granted = 0
        self.answers = 0
        self.limited = 0

    @property
    def sent(self) -> int:
        return max(self.granted, self.answers)

    @property
    def share(self) -> float:
        """The share of 429s among the requests sent: a 429 often comes back long before an
        answer does, and a share of those answered so far would overstate it."""
        return self.limited / self.sent if self.sent else 0.0


def _pooled(levels: list[_Level]) -> _Level:
    pooled = _Level(0.0)
    for level in levels:
        pooled.granted += level.sent
        pooled.limited += level.limited
    return pooled


class LimitSearch:
    """The concurrency window of slow start and the requests-per-minute rate AIMD has found."""

    __slots__ = (
        "_bound",
        "_ceiling",
        "_chain",
        "_changed_at",
        "_decrease",
        "_grants",
        "_level",
        "_maximum",
        "_settled",
        "found",
        "noise",
        "window",
    )

    def __init__(self, maximum: int, *, now: float) -> None:
        self._maximum = maximum
        self.window: int | None = min(INITIAL_WINDOW, maximum)  # None: open, nothing to find
        self.found: float | None = None  # requests per minute, once a 429 taught one
        self.noise = 0.0  # the 429 share that slowing down did not lower
        self._ceiling = 0.0
        self._changed_at = now
        self._bound = False
        self._settled = False  # a clean stretch has followed the first 429
        self._grants: deque[float] = deque()  # recent grant times, while no rate is found
        self._level = _Level(now)  # the answers at the pace in force
        # The found paces the decreases since the last increase went down from, oldest first.
        self._chain: list[_Level] = []
        self._decrease: float | None = None  # the last change's factor, if it was a decrease

    @property
    def searching(self) -> bool:
        return self.window is not None or self.found is not None or self.noise > 0

    def granted(self, now: float) -> None:
        self._level.granted += 1
        if self.found is not None or not self.searching:
            return
        grants = self._grants
        grants.append(now)
        while grants[0] < now - RATE_SPAN:
            grants.popleft()

    def answered(self, granted_at: float | None = None) -> bool:
        """A clean answer (to a request granted at `granted_at`); True if the window grew (a
        waiter for a slot may go now)."""
        if granted_at is not None:
            self._count(granted_at, limited=False)
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
        self.noise = 0.0
        self._grants.clear()

    def limited(self, now: float, granted_at: float) -> float | None:
        """A 429 while no limit is announced: the rate to pace at now, or None if unchanged
        (a 429 to a request sent before the last change belongs to a wave already counted;
        one within the noise floor is no wave). `found` is None afterwards when the 429s
        proved to be noise and the pace they set is lifted."""
        self._count(granted_at, limited=True)
        if granted_at < self._changed_at:
            return None
        level = self._level
        if self.noise and level.limited <= 2 * self.noise * level.sent + NOISE_MARGIN:
            return None
        assert self.found is None or level.pace == self.found
        previous = _pooled([old for old in self._chain if old.pace > level.pace])
        if self._decrease is not None and previous.sent >= NOISE_SAMPLE:
            # The share at the higher paces lately, pooled: at a limit it only overstates what
            # the last of them refused, which makes a noise verdict harder, never easier.
            before = previous.share
            if_limit = max(0.0, 1 - (1 - before) / self._decrease)
            # Judged only where a limit would at least halve the share: at a share near 100%
            # both read alike, and slowing down is right either way. A share that rose is no
            # noise either: the old pace was farther above a limit than its few 429s said.
            told_apart = if_limit <= before / 2
            bound = 3 * before + 2 / level.sent  # two 429s more than three times it
            if told_apart and (before + if_limit) / 2 <= level.share <= bound:
                if level.limited >= NOISE_EVIDENCE:
                    self._noise_found(now)
                return None  # noise, or too few yet to tell: no decrease on them
        if self.found is None:
            sent = max(len(self._grants), 1)
            span = min(RATE_SPAN, max(now - self._grants[0], 0.1)) if self._grants else RATE_SPAN
            rate = max(MIN_RPM, FIRST_DECREASE * 60.0 * sent / span)
            self._ceiling = max(self._ceiling, MAX_GROWTH * rate)
            self.window = None  # the rate paces from now on
            self._grants.clear()
            factor = FIRST_DECREASE
        elif self._settled:
            factor = DECREASE
            rate = max(MIN_RPM, self.found * factor)
        else:
            # Before a clean stretch the first rate may be far too high, and then most answers
            # at it are 429s: halve it. A small share says it is not far off.
            factor = max(FIRST_DECREASE, min(DECREASE, 1 - level.share))
            rate = max(MIN_RPM, self.found * factor)
        return self._change(rate, now, decrease=factor)

    def clean(self, now: float) -> float | None:
        """A clean answer while pacing at a found rate: the raised rate, or None if unchanged."""
        if self.found is None or now - self._changed_at < INCREASE_EVERY:
            return None
        self._settled = True
        if not self._bound:
            return None
        step = max(1.0, INCREASE_STEP * self.found)
        return self._change(min(self._ceiling, self.found + step), now)

    def _noise_found(self, now: float) -> None:
        """The 429s came at the same share at a lower rate: a noise floor, and the pace they
        set is lifted (a limit behind them shows again as a share above the floor)."""
        pooled = _pooled([self._level, *self._chain]).share
        self.noise = max(self.noise, min(MAX_NOISE, pooled))
        self.found = None  # unpaced, as before the first 429
        self._change_level(now)
        self._decrease = None

    def _change(self, rate: float, now: float, *, decrease: float | None = None) -> float:
        self._change_level(now)
        self.found = rate
        self._level.pace = rate
        self._bound = False
        self._decrease = decrease
        return rate

    def _change_level(self, now: float) -> None:
        if self.found is None:
            self._chain = []  # the paces found since the first 429, lately
        else:
            self._chain = [*self._chain[-(MAX_CHAIN - 1) :], self._level]
        self._level = _Level(now)
        self._changed_at = now

    def _count(self, granted_at: float, *, limited: bool) -> None:
        """Count an answer toward the pace its request was granted at."""
        for level in (self._level, *reversed(self._chain)):
            if granted_at >= level.since:
                level.answers += 1
                level.limited += limited
                return

    def __repr__(self) -> str:
        found = "none" if self.found is None else f"{self.found:.1f}"
        return f"<LimitSearch window={self.window} found_rpm={found} noise={self.noise:.3f}>"
