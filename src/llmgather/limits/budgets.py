"""Limits as a list of budgets: a new kind of limit is one entry of `KINDS`.

A kind says what a budget counts and over what window: its name (as `Limits`, the CLI and
announced limits spell it), how much of a request's `Cost` it reserves before the send, and what
it settles to once the real `Usage` is known.

    rpm    requests per minute      tpm    input + output tokens per minute
    rpd    requests per day         itpm   input tokens per minute
    max_cost  USD in all (a cap)    otpm   output tokens per minute

A per-minute budget is paced: a token bucket that lets `burst_seconds` worth of the limit out at
once and refills evenly, since providers enforce minute limits over short spans. A per-day
budget is not: `--rpd 1500` lets the day's 1,500 requests go as fast as the other limits allow,
then waits until the first of them is a day old (a sliding window, see `limits.window`); pacing
them one per 58 s would make a short job take a day. The cost cap is neither: no window, no
refill (`limits.cap`); it counts nano-dollars (`scale`: the user gives USD).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from llmgather._config import Limits
from llmgather._types import Usage
from llmgather.limits.base import Cost
from llmgather.limits.bucket import TokenBucket
from llmgather.limits.cap import Cap
from llmgather.limits.window import SlidingWindow

MINUTE = 60.0
DAY = 86_400.0
NEVER = float("inf")  # a cap's window: what is spent is never given back by time
CAP = "max_cost"
NANO = 1_000_000_000  # nano-dollars in a dollar: the cost cap counts whole ones


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of limit: what it counts (`reserve`, then `settle` with the real usage), per
    `window` seconds, and whether it is `paced` over the window or may be spent at once;
    `unit` names it in messages, `short` on the progress line. `scale` turns the limit as the
    user gives it into the units counted (USD into nano-dollars)."""

    name: str
    window: float
    paced: bool
    reserve: Callable[[Cost], int]
    settle: Callable[[Cost, Usage], int]
    unit: str
    short: str
    scale: int = 1

    def scaled(self, limit: float) -> float:
        """The user's `limit` in the units counted: exact (0.29 USD is 290,000,000 nano-dollars,
        where a float product would round one below)."""
        if self.scale == 1:
            return limit
        return float(round(Decimal(str(limit)) * self.scale))

    @property
    def capped(self) -> bool:
        """A total, not a rate: nothing refills it."""
        return self.window == NEVER


def _requests(cost: Cost) -> int:
    return cost.requests


def _requests_sent(cost: Cost, usage: Usage) -> int:
    return cost.requests  # a request sent counts, whatever it produced


def _money(cost: Cost) -> int:
    return cost.nano_usd


def _money_spent(cost: Cost, usage: Usage) -> int:
    # Priced as the answer's line is; a cost that cannot price its usage keeps its reservation.
    return cost.nano_usd if cost.priced is None else cost.priced(usage)


KINDS: tuple[Kind, ...] = (
    Kind("rpm", MINUTE, True, _requests, _requests_sent, "requests/min", "req/min"),
    Kind("rpd", DAY, False, _requests, _requests_sent, "requests/day", "req/day"),
    Kind(
        "tpm", MINUTE, True, lambda c: c.tokens, lambda c, u: u.total_tokens,
        "tokens/min", "tok/min",
    ),
    Kind(
        "itpm", MINUTE, True, lambda c: c.input_tokens, lambda c, u: u.input_tokens,
        "input tokens/min", "in tok/min",
    ),
    Kind(
        "otpm", MINUTE, True, lambda c: c.output_tokens, lambda c, u: u.output_tokens,
        "output tokens/min", "out tok/min",
    ),
    Kind(CAP, NEVER, False, _money, _money_spent, "USD in all", "USD cap", scale=NANO),
)  # fmt: skip
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}
UNITS = {kind.name: kind.unit for kind in KINDS}


def below_yours(name: str, announced: float, yours: float) -> str:
    """What to tell the user once a server announces less than the limit they set: the user's
    limit is a ceiling, so the announced one paces."""
    unit = UNITS.get(name, name)
    return (
        f"the server announces {announced:,.0f} {unit}, below your {name}={yours:,.0f}: "
        f"pacing at {announced:,.0f} {unit}"
    )


class Budget:
    """One kind of limit in force: its limit per window and what has been spent of it."""

    __slots__ = ("_meter", "announced", "kind", "limit")

    def __init__(
        self, kind: Kind, limit: float, *, burst_seconds: float, now: float, announced: bool
    ) -> None:
        self.kind = kind
        self.limit = limit
        self.announced = announced
        self._meter: TokenBucket | SlidingWindow | Cap
        if kind.capped:
            self._meter = Cap(round(limit))
        elif kind.paced:
            rate = limit / kind.window
            self._meter = TokenBucket(rate=rate, capacity=max(1.0, rate * burst_seconds), now=now)
        else:
            self._meter = SlidingWindow(capacity=limit, window=kind.window)

    @property
    def cap(self) -> Cap | None:
        """The meter of a cap (`limits.cap`): the limiter asks it whether to wait or refuse."""
        return self._meter if isinstance(self._meter, Cap) else None

    def wait_time(self, now: float, cost: Cost) -> float:
        amount = self.kind.reserve(cost)
        meter = self._meter
        if not amount or isinstance(meter, Cap):
            return 0.0  # a cap is never waited for by time (the limiter asks `cap`)
        return meter.wait_time(now, amount)

    def take(self, now: float, cost: Cost) -> None:
        amount = self.kind.reserve(cost)
        if amount:
            meter = self._meter
            if isinstance(meter, Cap):
                meter.take(amount)
            else:
                meter.take(now, amount)

    def settle(self, now: float, cost: Cost, usage: Usage, taken_at: float) -> float:
        """Give back what `cost` over-reserved (or charge what it under-estimated); returns the
        amount given back."""
        surplus = self.kind.reserve(cost) - self.kind.settle(cost, usage)
        if surplus:
            if isinstance(self._meter, Cap):
                self._meter.settle(surplus)
            elif isinstance(self._meter, TokenBucket):
                self._meter.give_back(now, surplus)
            else:
                self._meter.give_back(now, surplus, taken_at=taken_at)
        return surplus

    def remaining(self, now: float) -> float:
        """What may be spent at once now: a paced budget's burst level, what is left of a
        day's window (never below 0: a large request may run a bucket into debt)."""
        meter = self._meter
        if isinstance(meter, Cap):
            return float(meter.remaining())
        if isinstance(meter, TokenBucket):
            return max(0.0, meter.level(now))
        return max(0.0, meter.capacity - meter.used(now))

    def spent_at_least(self, now: float, spent: float) -> None:
        """Count at least `spent` of the limit as used now: what a server says it has counted
        (its limit less its remaining). Never frees what this budget counts as used.

        A per-minute bucket holds `burst_seconds` of the limit, so it is at most emptied: a
        server that refills as it goes (all of them do) takes the next request as soon as
        one request's worth has refilled, not after the whole minute. A day's window is left
        to its own count."""
        meter = self._meter
        if isinstance(meter, TokenBucket):
            missing = meter.capacity - meter.level(now)
            spent = min(spent, meter.capacity)
            if spent > missing:
                meter.take(now, spent - missing)

    def empty(self, now: float) -> None:
        """Nothing left to spend now, and nothing owed: after a 429 the server's budget is
        empty, not in debt, whatever this one counted spent at a higher limit."""
        if isinstance(self._meter, TokenBucket):
            self._meter.take(now, self._meter.level(now))

    def resized(self, limit: float, *, burst_seconds: float, now: float) -> Budget:
        """The same budget with a new limit, keeping what was spent of the old one (so a new
        announcement never opens a fresh burst)."""
        budget = Budget(self.kind, limit, burst_seconds=burst_seconds, now=now, announced=True)
        meter = self._meter
        if isinstance(meter, Cap):
            budget._meter = meter  # a cap is never announced: kept as it is
        elif isinstance(meter, TokenBucket):
            new = budget._meter
            assert isinstance(new, TokenBucket)
            new.take(now, meter.capacity - meter.level(now))
        else:
            meter.capacity = limit
            budget._meter = meter
        return budget

    def __repr__(self) -> str:
        origin = "announced" if self.announced else "set"
        return f"<Budget {self.kind.name}={self.limit:g} ({origin}) {self._meter!r}>"


def budgets_for(limits: Limits, *, now: float) -> dict[str, Budget]:
    """The budgets the user set, by name, in `KINDS` order."""
    found = {}
    for kind in KINDS:
        limit = getattr(limits, kind.name)
        if limit is not None:
            found[kind.name] = Budget(
                kind, kind.scaled(limit), burst_seconds=limits.burst_seconds, now=now,
                announced=False,
            )  # fmt: skip
    return found
