"""Finding a key's limits when told none: slow start, then AIMD where nothing is announced.

Told no limit, the limiter knows nothing of the key's budget until the first answers come back,
and sending a whole concurrency's worth blind opens a job with a storm of 429s. So, as TCP does:

- **Slow start.** A first wave of `INITIAL_WINDOW` requests; each clean answer lets one more be
  in flight, so the window doubles every round trip, up to the concurrency cap. Once an answer
  has come back clean and announced nothing (a server that announces its limits does so in its
  first answer), the window also doubles every `DOUBLING_S` by time alone: round trips of a
  second would otherwise hold a job to a few waves, and a 429 comes back at once, long before
  an answer, so it stops the growth a few sends past the server's budget, not a round trip
  past it. The window grows one request at a time, never in a jump: the sends just past the
  budget are the 429s it costs. Slow start ends when an answer announces a limit (the budgets
  pace the sends from then on) or when a 429 comes.
- **AIMD where nothing is announced** (Gemini, many OpenAI-compatible servers, gateways): the
  first 429 sets a requests-per-minute budget at what the server took before refusing. A
  per-minute limit lets about a second's worth out at once (`RATE_SPAN`), so the grants in any
  span `L` before the refused one number at most the rate times `L + RATE_SPAN`: the rate is
  the highest such count over `L + RATE_SPAN` within the last `RATE_SPAN`. From a full budget,
  as at a job's start, that is the limit itself; over a start of a few milliseconds it is
  what the server let through at once, not that many a millisecond. A server that lets more
  than a second's worth through at once is overestimated, so until a first clean stretch each
  new wave of 429s cuts the rate by the share of 429s at it, halving it at most and by
  `DECREASE` at least; after that a wave multiplies it by `DECREASE`. Only a 429 to a request
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
429s more) counts as a wave. The first pace, out of the unpaced stretch (the slow start, or
a pace lifted as noise), is always set; that stretch sent at many paces, so it is no higher
pace to pool with later. But a limit paced at what it took from a full budget refuses
nothing, and one that let out more than a second's worth at once refuses most sends at it, so
at the first pace the 429s are judged at once (before any noise floor), and are noise:

- when their share is within half to twice the unpaced share (one in those sent up to the 429
  that ended it, once `FIRST_SAMPLE` went);
- once, before any noise floor, when one comes among the first `NOISE_SAMPLE` sent at it and
  is not most of them: random noise comes that early often, and a decrease on it paces lower
  still, where what tells noise apart comes slower still (a run 3x slower). A limit behind it
  shows again as a share above the floor, and is paced again at no more than that first pace
  (not at a rate read off the sends past it), then judged as any other;
- once, before any noise floor, when more of the unpaced requests sent after the one refused
  come back clean than a limit's empty budget could have refilled (two more, as a request sent
  a hair later may reach the server first): a first wave goes out at once, and a 429 early in
  it would otherwise read as a limit of the few before it.

A pace that low sends too few requests to wait for more evidence.

Pure arithmetic over clock readings, like the buckets: `LocalLimiter` feeds it and applies it.
"""

from __future__ import annotations

import math
from collections import deque

INITIAL_WINDOW = 8
DOUBLING_S = 0.025  # the window's doubling time by time alone, once an answer came back clean
RATE_SPAN = 1.0  # seconds of its limit a server lets out at once; of grants read at a 429
# Of what the server took: paced at exactly its refill, a send a hair early finds it short.
FIRST_MARGIN = 0.95
DEEPEST_DECREASE = 0.5  # the most one wave of 429s cuts the rate by, before a clean stretch
DECREASE = 0.85
INCREASE_EVERY = 2.0
INCREASE_STEP = 0.02
MIN_RPM = 1.0
MAX_GROWTH = 4.0
NOISE_EVIDENCE = 2  # 429s at a lowered pace, at the old share, that make them noise
NOISE_MARGIN = 3  # 429s above twice the noise floor before a share counts as a wave
NOISE_SAMPLE = 20  # requests sent at the paces before, before their share of 429s counts
FIRST_SAMPLE = 4  # requests sent unpaced, before their share counts against the first pace's
MAX_CHAIN = 16  # the latest paces remembered
MAX_NOISE = 0.5
_MAX_DOUBLINGS = 64  # past these the window is at any cap: no float overflow
_WAKE_MARGIN = 1e-6  # seconds past a growth instant, so the waiter finds the window grown


class _Level:
    """The requests granted at one pace, from `since`: how many, how many were answered, and
    how many of those with a 429."""

    __slots__ = ("answers", "granted", "limited", "pace", "since")

    def __init__(self, since: float, pace: float = 0.0) -> None:
        self.since = since
        self.pace = pace  # the found rate in force (0.0: none; inf: the unpaced stretch before)
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
        "_lifted_pace",
        "_maximum",
        "_opened_at",
        "_opened_window",
        "_refused_at",
        "_settled",
        "_unpaced_sent",
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
        self._opened_at: float | None = None  # the first clean answer: growth by time from then
        self._opened_window = 1
        self._bound = False
        self._settled = False  # a clean stretch has followed the first 429
        self._grants: deque[float] = deque()  # recent grant times, while no rate is found
        self._level = _Level(now)  # the answers at the pace in force
        # The found paces the decreases since the last increase went down from, oldest first.
        self._chain: list[_Level] = []
        # The last change's factor, if it was a decrease (0.0: from unpaced to a first pace).
        self._decrease: float | None = None
        self._unpaced_sent = 1  # sent unpaced up to the 429 that set the first pace
        self._lifted_pace = math.inf  # a first pace lifted on its first few sends' 429s
        self._refused_at = 0.0  # when the request whose 429 set the first pace was granted

    @property
    def searching(self) -> bool:
        return self.window is not None or self.found is not None or self.noise > 0

    def granted(self, now: float) -> None:
        self._level.granted += 1
        if self.found is not None or not self.searching:
            return
        grants = self._grants
        grants.append(now)
        # Twice the span read at a 429: its grant's second is kept while the 429 comes back.
        while grants[0] < now - 2 * RATE_SPAN:
            grants.popleft()

    def answered(self, granted_at: float | None = None, *, now: float | None = None) -> bool:
        """A clean answer (to a request granted at `granted_at`, come back at `now`: from then
        on the window grows by time too); True if the window grew (a waiter for a slot may go
        now)."""
        if granted_at is not None:
            self._count(granted_at, limited=False)
            if now is not None and self._budget_was_not_empty():
                self._noise_found(now)
        if self.window is None or self.window >= self._maximum:
            return False
        if now is not None and self._opened_at is None:
            self._opened_at, self._opened_window = now, self.window
        self.window += 1
        return True

    def window_at(self, now: float) -> int | None:
        """The slow start's window at `now`: grown by answers, and by time since the first
        clean one (None: no slow start, nothing holds the concurrency below its cap)."""
        window = self.window
        if window is None or self._opened_at is None:
            return window
        doublings = (now - self._opened_at) / DOUBLING_S
        if doublings >= _MAX_DOUBLINGS:
            return self._maximum
        # The epsilon: at the instant `until_wider` names, round-off must not leave it short.
        by_time = math.floor(self._opened_window * 2.0**doublings + 1e-9)
        return min(self._maximum, max(window, by_time))

    def until_wider(self, now: float, in_flight: int) -> float | None:
        """Seconds until the window lets more than `in_flight` be in flight by time alone;
        None if only an answer can widen it."""
        if self.window is None or self._opened_at is None or in_flight >= self._maximum:
            return None
        at = self._opened_at + DOUBLING_S * math.log2((in_flight + 1) / self._opened_window)
        return max(at - now, 0.0) + _WAKE_MARGIN

    def held(self) -> None:
        """The found rate held a send back: it binds, so a clean stretch may raise it."""
        self._bound = True

    def announced(self) -> None:
        """An answer announced a limit: the budgets know better than any search."""
        self.window = None
        self._opened_at = None
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
        # At the first pace the 429s are judged before the noise floor: below it they would
        # hold a pace a limit's 429s set for good, and a pace noise set is lifted again.
        if self._decrease == 0.0 and self._maybe_noise(level, now):
            return None
        if self.noise and level.limited <= 2 * self.noise * level.sent + NOISE_MARGIN:
            return None
        assert self.found is None or level.pace == self.found
        if self._decrease and self._maybe_noise(level, now):
            return None  # noise, or too few yet to tell: no decrease on them
        if self.found is None:
            taken = self._taken_before(granted_at)
            if taken is None:
                # Refused before anything got through (a key another process has spent, a
                # stray 429 on the first request): no evidence of a rate. The 429's pause
                # holds the key; the next 429 after some grants sets the pace.
                return None
            # After a first pace lifted on its first 429s, a limit behind them: back to it,
            # not to a rate read off the unpaced sends past that limit.
            rate = min(taken, self._lifted_pace)
            later = sum(1 for at in self._grants if at > granted_at)
            self._unpaced_sent = max(1, level.sent - later)
            self._refused_at = granted_at
            self._ceiling = max(self._ceiling, MAX_GROWTH * rate)
            self.window = None  # the rate paces from now on
            self._opened_at = None
            self._grants.clear()
            factor = 0.0  # from unpaced
        elif self._settled:
            factor = DECREASE
            rate = max(MIN_RPM, self.found * factor)
        else:
            # Before a clean stretch the first rate may be far too high, and then most answers
            # at it are 429s: halve it. A small share says it is not far off.
            factor = max(DEEPEST_DECREASE, min(DECREASE, 1 - level.share))
            rate = max(MIN_RPM, self.found * factor)
        return self._change(rate, now, decrease=factor)

    def _maybe_noise(self, level: _Level, now: float) -> bool:
        """Whether the 429s at the pace in force, the last one included, may be noise (and
        are, `_noise_found`, once there are enough of them) rather than a limit's."""
        if not self._decrease:
            # The first pace, what a limit let through from a full budget: a limit paced at it
            # refuses nothing, so 429s at about the unpaced stretch's share are noise. That
            # share is one in those sent up to the first 429's request: the ones sent after
            # it, their 429s still coming in, would make a limit's read as noise.
            before = 1 / self._unpaced_sent
            if self._unpaced_sent < FIRST_SAMPLE or before > MAX_NOISE:
                return False
            if level.share > MAX_NOISE:
                return False  # most answers 429s: the first pace is too high, not noise
            if before / 2 <= level.share <= 2 * before:
                self._noise_found(now)
                return True
            # A 429 among the first few sent at it: a limit paced at what it took refuses
            # none, and one that took more than a second's worth at once refuses most. Noise
            # comes that early often, and a decrease on it would pace the job lower still,
            # where what tells noise apart comes slower still: it is noise, once. A limit
            # behind it shows again as a share above that floor, and is judged as any other.
            if level.sent < NOISE_SAMPLE and not self.noise:
                self._lifted_pace = level.pace
                self._noise_found(now)
                return True
            return False
        # The paces found above this one lately; the unpaced stretch had many paces, no one
        # share to compare with.
        previous = _pooled([old for old in self._chain if level.pace < old.pace < math.inf])
        if previous.sent < NOISE_SAMPLE:
            return False
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
            return True
        return False

    def _budget_was_not_empty(self) -> bool:
        """Whether, at the first pace, more of the unpaced requests sent after the one whose
        429 set it came back clean than a limit's empty budget refills in between: then that
        429 was no limit's (the first wave, sent at once, and a 429 early in it)."""
        if self._decrease != 0.0 or self.found is None:
            return False
        if self.noise:
            return False  # judged once: a limit lifted as noise is not lifted again
        unpaced = self._chain[0]
        clean_after = unpaced.answers - unpaced.limited - (self._unpaced_sent - 1)
        refilled = self.found / FIRST_MARGIN / 60.0 * (self._changed_at - self._refused_at)
        # Two more than the refill lets by: a request sent a hair later may reach it first.
        return clean_after > refilled + NOISE_EVIDENCE

    def _taken_before(self, refused_at: float) -> float | None:
        """The requests per minute a server took before refusing the request granted at
        `refused_at`: the most grants before it in a span `L` within `RATE_SPAN`, over
        `L + RATE_SPAN` (a budget holds about a second's worth at most, so no more got through
        in `L` from a full one). None when none got through."""
        best = 0.0
        taken = -1  # the refused request is among the grants at `refused_at`
        for at in reversed(self._grants):
            if at > refused_at:
                continue
            if at < refused_at - RATE_SPAN:
                break
            taken += 1
            best = max(best, taken / (refused_at - at + RATE_SPAN))
        if best == 0.0:
            return None
        return max(MIN_RPM, FIRST_MARGIN * 60.0 * best)

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
        self._chain = []  # the paces found since the pace was lifted, lately
        self._new_level(now)
        self._decrease = None

    def _change(self, rate: float, now: float, *, decrease: float | None = None) -> float:
        if self.found is None:
            # Out of an unpaced stretch (the slow start, or a pace lifted as noise): the 429s
            # at the first pace are judged against its share, as at any higher pace.
            self._level.pace = math.inf
            self._chain = [self._level]
        else:
            self._chain = [*self._chain[-(MAX_CHAIN - 1) :], self._level]
        self._new_level(now)
        self.found = rate
        self._level.pace = rate
        self._bound = False
        self._decrease = decrease
        return rate

    def _new_level(self, now: float) -> None:
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
