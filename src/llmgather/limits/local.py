"""The in-process limiter: a concurrency cap and a list of budgets, shared by every caller in
one event loop.

It waits, it does not fail. A send needs a concurrency slot, then its cost from every budget
(see `limits.budgets`). Waiters queue FIFO behind one lock: only the head of the queue waits, and
for exactly as long as it must (never polling): a timer for what time refills (a pause, a
budget), a wake-up for what an event frees (a slot released, a reservation settled below its
estimate, a limit raised). A caller skips the queue while nobody in it waits for room. After the answer, `release` settles the estimate with the real
usage. A 429 or an outage pauses everyone (`penalise`): for the server's Retry-After, or for a
cool-down that doubles while such signals keep coming in waves, until a success. Streams cut
off again and again lower the concurrency cap (`limits.concurrency`).

Told no limit at all, it finds them (`limits.discovery`): a small first wave that grows with
each clean answer, and with time once one came back announcing nothing, until one announces the
key's limits; where none is ever announced, a requests-per-minute rate found from the 429s
(AIMD).

A cost cap (`Limits.max_cost`, `limits.cap`) is the one thing that fails an acquire: a
reservation that does not fit waits while reservations are outstanding (their answers may give
money back), and raises `BudgetExhaustedError` once none is, for that caller and every later one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from llmgather._clock import Clock, SystemClock
from llmgather._config import Limits
from llmgather._errors import BudgetExhaustedError, ConfigurationError
from llmgather._types import Usage, remaining_key
from llmgather.limits.base import Cost, Ending, Limiter, LimiterStats, Permit
from llmgather.limits.budgets import CAP, KINDS_BY_NAME, Budget, below_yours, budgets_for
from llmgather.limits.concurrency import ConcurrencyCap
from llmgather.limits.discovery import LimitSearch
from llmgather.limits.waiting import Wakeup

logger = logging.getLogger("llmgather")

DEFAULT_COOL_DOWN = 0.5
DEFAULT_MAX_COOL_DOWN = 30.0
# A wait shorter than this is float round-off in a refill, not a wait: sleeping it would not
# move a clock that reads 1e6 seconds, and the waiter would find itself short again forever.
_NO_WAIT = 1e-9


class LocalLimiter:
    """The `Limiter` for callers in one process: `LocalLimiter(Limits(rpm=500, tpm=200_000))`.

    `cool_down` is the first hold after a 429 or an outage that named no Retry-After; it doubles
    with each wave of them, up to `max_cool_down`, so a server back up is noticed within that.
    `discover=False` sends a whole concurrency's worth at once even when told no limit.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Clock | None = None,
        cool_down: float = DEFAULT_COOL_DOWN,
        max_cool_down: float = DEFAULT_MAX_COOL_DOWN,
        discover: bool = True,
    ) -> None:
        if not 0 < cool_down <= max_cool_down:
            raise ValueError("cool_down must be positive and at most max_cool_down")
        self.limits = limits
        self._clock = clock or SystemClock()
        self._budgets: dict[str, Budget] = budgets_for(limits, now=self._clock.now())
        self._cap = ConcurrencyCap(limits.concurrency)
        self._gate = asyncio.Lock()
        self._queued = 0  # callers in `acquire` that found the way blocked, FIFO behind `_gate`
        self._in_flight = 0
        self._paused_until = 0.0
        self._cool_down = cool_down
        self._max_cool_down = max_cool_down
        self._backoff = 0.0
        self._penalties = 0
        self._waiting_on: str | None = None  # what the head waiter waits for
        self._wakeup = Wakeup(self._clock)  # poked to end the head waiter's wait early
        self._lowered_told: set[str] = set()  # budgets a lower announced limit replaced, told once
        self._told_at: dict[str, float] = {}  # when each budget no one gave was first announced
        # A cost cap says nothing of the pace the key allows: told only that, it still searches.
        told_nothing = discover and not any(not b.kind.capped for b in self._budgets.values())
        self._search = (
            LimitSearch(limits.concurrency, now=self._clock.now()) if told_nothing else None
        )

    async def acquire(self, cost: Cost = Cost()) -> Permit:  # noqa: B008 (frozen: shared is fine)
        if self._waiting_on is None and self._blocked_by(cost) is None:
            # Nobody waits for room and nothing holds: skip the line. Callers still in it that
            # have not looked yet would find room too; waiting on `_queued` instead would keep
            # a line that formed once (a slow start) alive for good, one loop turn per send.
            return self._grant(cost)
        self._queued += 1
        try:
            async with self._gate:
                try:
                    while (reason := self._blocked_by(cost)) is not None:
                        self._waiting_on, wait = reason
                        if self._waiting_on == "rpm" and self._search is not None:
                            self._search.held()
                        if wait is None:
                            await self._wakeup.poked()
                        elif self._waiting_on == "pause":
                            await self._clock.sleep(wait)  # nothing but time ends a pause early
                        else:
                            await self._wakeup.poked_or(wait)
                finally:
                    self._waiting_on = None
                return self._grant(cost)
        finally:
            self._queued -= 1

    async def release(self, permit: Permit, usage: Usage | None, *, outcome: Ending = "ok") -> None:
        self._in_flight -= 1
        given_back = False
        cap = self._budgets.get(CAP)
        if cap is not None and cap.cap is not None:
            # Settled or not, the reservation is no longer open: a caller waiting for it to
            # give money back now either fits or learns that nothing else will.
            cap.cap.close(cap.kind.reserve(permit.cost))
            given_back |= self._waiting_on == CAP
        if usage is not None and self._budgets:
            now = self._clock.now()
            for name, budget in self._budgets.items():
                if permit.granted_at < self._told_at.get(name, permit.granted_at):
                    # Granted before the server told its count of this budget: it settled
                    # this answer before it sent it, and its count holds what that freed.
                    continue
                given_back |= budget.settle(now, permit.cost, usage, permit.granted_at) > 0
        if outcome == "ok":
            self._backoff = 0.0
            self._cap.succeeded(permit.wave)
        elif outcome == "truncated":
            self._cap.truncated(permit.wave)
        if self._search is not None and self._search.searching:
            self._search_after(permit, outcome)
        waiting_on = self._waiting_on
        if waiting_on == "concurrency" or (given_back and waiting_on in self._budgets):
            self._poke()

    async def penalise(self, retry_after: float | None) -> None:
        now = self._clock.now()
        self._penalties += 1
        if retry_after is not None:
            self._paused_until = max(self._paused_until, now + retry_after)
            return
        if now < self._paused_until:
            return  # sent before the hold began, answered while it lasts: the same wave
        if self._backoff:
            self._backoff = min(self._max_cool_down, self._backoff * 2)
        else:
            self._backoff = self._cool_down
        self._paused_until = now + self._backoff

    async def observe(self, announced: Mapping[str, float]) -> None:
        changed = False
        for name, limit in announced.items():
            if name not in KINDS_BY_NAME or not limit or limit <= 0:
                continue
            # The user's own limit is a ceiling: a lower announced one paces instead, and one
            # announced above it leaves it (or puts it back) in force.
            yours = getattr(self.limits, name)
            from_server = yours is None or limit < yours
            pace = limit if from_server else yours
            current = self._budgets.get(name)
            if current is not None and current.limit == pace and self._found != name:
                continue
            if self._search is not None and self._search.searching and KINDS_BY_NAME[name].paced:
                self._end_search()  # a day's limit says nothing of the pace a minute allows
            current = self._budgets.get(name)
            now = self._clock.now()
            if current is None:
                self._told_at[name] = now
                budget = Budget(
                    KINDS_BY_NAME[name],
                    pace,
                    burst_seconds=self.limits.burst_seconds,
                    now=now,
                    announced=True,
                )
            else:
                budget = current.resized(pace, burst_seconds=self.limits.burst_seconds, now=now)
            budget.announced = from_server
            # Start from what the server says is left (a job restarted, another process on the
            # key), never from more than this limiter has left itself.
            remaining = announced.get(remaining_key(name))
            if remaining is not None and from_server:
                budget.spent_at_least(now, limit - remaining)
            self._set_budget(budget)
            if yours is not None and from_server and name not in self._lowered_told:
                self._lowered_told.add(name)
                logger.warning("llmgather: %s", below_yours(name, limit, yours))
            changed = True
        if changed:
            self._poke()

    def statistics(self) -> LimiterStats:
        budgets = self._budgets.values()
        window = self._search.window_at(self._clock.now()) if self._search is not None else None
        return LimiterStats(
            in_flight=self._in_flight,
            concurrency=self._cap.current if window is None else min(window, self._cap.current),
            max_concurrency=self._cap.maximum,
            limits={b.kind.name: b.limit / b.kind.scale for b in budgets},
            learned={b.kind.name: b.limit for b in budgets if b.announced},
            lowered={
                b.kind.name: yours
                for b in budgets
                if b.announced and (yours := getattr(self.limits, b.kind.name)) is not None
            },
            pause_remaining=max(0.0, self._paused_until - self._clock.now()),
            penalties=self._penalties,
            waiting_on=self._waiting_on,
            found={name: self._budgets[name].limit for name in (self._found,) if name},
            queued=self._queued,
        )

    def spent_before(self, nano_usd: int) -> None:
        """Count what a resumed job spent in its earlier runs against the cost cap (if any):
        the cap is the job's, over all its runs."""
        budget = self._budgets.get(CAP)
        if budget is not None and budget.cap is not None:
            budget.cap.used += nano_usd

    def remaining(self) -> dict[str, float]:
        """What each budget in force lets out at once now, by name (see `Budget.remaining`):
        read-only, for metrics."""
        now = self._clock.now()
        # In the unit the limit is given in (a cost cap's USD, not the nano-dollars it counts).
        return {
            name: budget.remaining(now) / budget.kind.scale
            for name, budget in self._budgets.items()
        }

    # -- finding the limits when told none (see `limits.discovery`) ------------------------

    @property
    def _found(self) -> str | None:
        """The budget the search set from 429s ("rpm"), if any."""
        search = self._search
        return "rpm" if search is not None and search.found is not None else None

    def _search_after(self, permit: Permit, outcome: Ending) -> None:
        assert self._search is not None
        search = self._search
        before = search.found
        if outcome == "ok":
            now = self._clock.now()
            if search.answered(permit.granted_at, now=now) and self._waiting_on == "concurrency":
                self._poke()
            if (rate := search.clean(now)) is not None:
                self._set_found_rate(rate, empty=False)
        elif outcome == "limited":
            if (rate := search.limited(self._clock.now(), permit.granted_at)) is not None:
                # Emptied when lowered; a pace restored after noise starts where it is.
                self._set_found_rate(rate, empty=before is None or rate < before)
        if before is not None and search.found is None:  # the 429s were noise
            del self._budgets["rpm"]
            self._poke()

    def _set_found_rate(self, rpm: float, *, empty: bool) -> None:
        """Pace at `rpm`; `empty` after a 429 (the server's budget is empty now, so is ours)."""
        now = self._clock.now()
        burst = self.limits.burst_seconds
        current = self._budgets.get("rpm")
        if current is None:
            budget = Budget(KINDS_BY_NAME["rpm"], rpm, burst_seconds=burst, now=now, announced=True)
        else:
            budget = current.resized(rpm, burst_seconds=burst, now=now)
        if empty:
            budget.empty(now)
        self._set_budget(budget)
        self._poke()  # the slow-start window is open now, or the rate went up

    def _end_search(self) -> None:
        """A limit was announced: the rate found from 429s gives way to it, and slow start ends."""
        if self._found is not None:
            del self._budgets["rpm"]
        assert self._search is not None
        self._search.announced()
        self._poke()

    def _set_budget(self, budget: Budget) -> None:
        self._budgets[budget.kind.name] = budget
        self._budgets = {k: self._budgets[k] for k in KINDS_BY_NAME if k in self._budgets}

    # -- waiting ----------------------------------------------------------------------------

    def _grant(self, cost: Cost) -> Permit:
        now = self._clock.now()
        for budget in self._budgets.values():
            budget.take(now, cost)
        self._in_flight += 1
        if self._search is not None:
            self._search.granted(now)
        return Permit(cost, granted_at=now, wave=self._cap.wave)

    def _blocked_by(self, cost: Cost) -> tuple[str, float | None] | None:
        """What holds a send of `cost` now, and for how long (None: until an event); None if
        nothing does. Raises `BudgetExhaustedError` when the cost cap never could take it."""
        if (capped := self._capped(cost)) is not None:
            return capped  # before the other limits: an exhausted cap fails without a wait
        if self._in_flight >= self._cap.current:
            return "concurrency", None
        now = self._clock.now()
        if self._search is not None and (window := self._search.window_at(now)) is not None:
            if self._in_flight >= window:
                return "concurrency", self._search.until_wider(now, self._in_flight)
        if (pause := self._paused_until - now) > _NO_WAIT:
            return "pause", pause
        longest: tuple[str, float | None] | None = None
        for name, budget in self._budgets.items():
            wait = budget.wait_time(now, cost)
            if wait > _NO_WAIT and (longest is None or wait > (longest[1] or 0.0)):
                longest = name, wait
        return longest

    def _capped(self, cost: Cost) -> tuple[str, None] | None:
        budget = self._budgets.get(CAP)
        cap = None if budget is None else budget.cap
        if budget is None or cap is None:
            return None
        amount = budget.kind.reserve(cost)
        if cap.fits(amount):
            return None
        if not cap.exhausted and cap.may_free():
            return CAP, None  # a reservation still open may give money back
        if not cap.exhausted:
            cap.exhausted = True
            self._poke()  # the callers queued behind learn it at once, not after their timers
        raise BudgetExhaustedError(
            spent=cap.used, cap=cap.capacity, needed=amount, scale=budget.kind.scale
        )

    def _poke(self) -> None:
        self._wakeup.poke()

    def __repr__(self) -> str:
        budgets = " ".join(f"{b.kind.name}={b.limit:g}" for b in self._budgets.values())
        return (
            f"<LocalLimiter in_flight={self._in_flight}/{self._cap.current} {budgets}".rstrip()
            + ">"
        )


def own_or_shared(limits: Limits, shared: Limiter | None, *, owner: str) -> Limiter:
    """The `shared` limiter, or a LocalLimiter of `limits`; a ConfigurationError when both
    carry limits (`owner` says whose rpm=, tpm=… were given: "the client", "run_job"…)."""
    if shared is None:
        return LocalLimiter(limits)
    if any(getattr(limits, name) is not None for name in KINDS_BY_NAME):
        raise ConfigurationError(
            f"give limits either to {owner} (rpm=, tpm=, …) or to the shared limiter passed "
            "as limiter=, not both"
        )
    return shared
