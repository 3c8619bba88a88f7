"""Server-side rate limits as a list of budgets: admit or refuse a request, then settle it.

Each budget is one entry of `BUDGET_KINDS` (requests per minute or per day, tokens per minute,
input or output tokens per minute) over llmgather's own `TokenBucket`, so the simulator and the
client limiter agree on what "within the limit" means (the client's kinds are
`limits.budgets.KINDS`). The token estimate is llmgather's too: input tokens are counted at
admission, output tokens are estimated from `max_tokens` and settled to the real output once the
answer is complete (as Anthropic documents for its OTPM limit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from llmgather.limits.bucket import TokenBucket

Counts = Literal["requests", "tokens", "input", "output"]
Window = Literal["minute", "day"]
DAY_SECONDS = 86_400.0


@dataclass(frozen=True, slots=True)
class BudgetKind:
    """One kind of limit: its name (as `SimConfig` and the CLI spell it), what it counts, when."""

    name: str
    counts: Counts
    window: Window

    def cost(self, input_tokens: int, output_tokens: int) -> int:
        """What one request takes from a budget of this kind at admission."""
        if self.counts == "requests":
            return 1
        if self.counts == "input":
            return input_tokens
        if self.counts == "output":
            return output_tokens
        return input_tokens + output_tokens

    @property
    def settles(self) -> bool:
        """True if the output estimate taken at admission is settled to the real output."""
        return self.counts in ("tokens", "output")


# Every kind of limit the simulator enforces; a new kind is one more entry (and its wording in
# each dialect). The order is the order of the checks and of the reported state.
BUDGET_KINDS = (
    BudgetKind("rpm", "requests", "minute"),
    BudgetKind("rpd", "requests", "day"),
    BudgetKind("tpm", "tokens", "minute"),
    BudgetKind("itpm", "input", "minute"),
    BudgetKind("otpm", "output", "minute"),
)
BUDGET_KIND_NAMES = tuple(kind.name for kind in BUDGET_KINDS)


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One budget as the rate-limit headers and the 429 bodies report it."""

    kind: BudgetKind
    limit: int  # per its window
    remaining: int  # the window's limit less what is used and not yet refilled
    reset_s: float  # seconds until the bucket is full again

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def used(self) -> int:
        return max(0, self.limit - self.remaining)


@dataclass(frozen=True, slots=True)
class LimitState:
    """Every configured budget, in `BUDGET_KINDS` order."""

    budgets: tuple[BudgetState, ...]

    def get(self, name: str) -> BudgetState | None:
        for budget in self.budgets:
            if budget.name == name:
                return budget
        return None

    def most_restrictive(self, *names: str) -> BudgetState | None:
        """Of the named budgets that are configured, the one with the least remaining.

        What Anthropic's headers report when several limits apply ("the most restrictive
        limit currently in effect"); ties go to the first name.
        """
        found = [b for name in names if (b := self.get(name)) is not None]
        return min(found, key=lambda b: b.remaining) if found else None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not admitted: which budget, the wait that would let it in, the state."""

    budget: BudgetState
    retry_after_s: float
    requested: int  # what the request needs from that budget
    state: LimitState
    too_large: bool = False  # the request could never fit the budget's per-window limit


class _Budget:
    __slots__ = ("bucket", "kind", "limit")

    def __init__(self, kind: BudgetKind, limit: float, bucket: TokenBucket) -> None:
        self.kind = kind
        self.limit = limit
        self.bucket = bucket

    def state(self, now: float) -> BudgetState:
        bucket = self.bucket
        # A minute's bucket holds only `burst_seconds` worth of the limit, so its level would
        # make an idle server at rpm=600 report 10 remaining of 600. What it is short of full
        # (negative levels included: a reservation larger than the bucket runs into debt) is
        # what has been used. The epsilon keeps the refill's float round-off from costing a
        # whole unit.
        used = bucket.capacity - bucket.level(now)
        return BudgetState(
            kind=self.kind,
            limit=int(self.limit),
            remaining=max(0, math.floor(self.limit - used + 1e-9)),
            reset_s=bucket.time_to_full(now),
        )


class ServerLimits:
    """The configured budgets (any subset of `BUDGET_KINDS`). Not thread-safe: one event loop
    owns it.

    A per-minute budget allows `burst_seconds` worth of its limit at once, as providers enforce
    minute limits over short windows. A day's budget can be spent at once and refills evenly
    over `day_seconds` (OpenAI's "Limit 200, Used 200 ... try again in 7m12s": 86400 s / 200);
    tests shorten the day rather than wait for one.
    """

    __slots__ = ("_budgets", "_burst_seconds", "_clock", "_day_seconds")

    def __init__(
        self,
        *,
        rpm: float | None = None,
        rpd: float | None = None,
        tpm: float | None = None,
        itpm: float | None = None,
        otpm: float | None = None,
        burst_seconds: float = 1.0,
        day_seconds: float = DAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._burst_seconds = burst_seconds
        self._day_seconds = day_seconds
        self._budgets: tuple[_Budget, ...] = ()
        self.change({"rpm": rpm, "rpd": rpd, "tpm": tpm, "itpm": itpm, "otpm": otpm})

    def change(self, limits: Mapping[str, float | None]) -> None:
        """Set, change (a positive number) or remove (None) the named limits while serving.

        A changed budget keeps what has been used of it: a limit halved mid-minute refuses
        until the use falls under the new one, as a provider's would. Raises ValueError
        naming an unknown budget or a limit that is not a positive number.
        """
        for name, limit in limits.items():
            if name not in BUDGET_KIND_NAMES:
                raise ValueError(
                    f"unknown limit {name!r}: use one of {', '.join(BUDGET_KIND_NAMES)}"
                )
            if limit is not None and not (
                isinstance(limit, int | float) and math.isfinite(limit) and limit > 0
            ):
                raise ValueError(f"{name} must be a positive number or null, got {limit!r}")
        now = self._clock()
        current = {budget.kind.name: budget for budget in self._budgets}
        budgets = []
        for kind in BUDGET_KINDS:
            old = current.get(kind.name)
            limit = limits[kind.name] if kind.name in limits else old.limit if old else None
            if not limit:
                continue
            bucket = self._bucket(kind, limit, now)
            if old is not None:
                bucket.take(now, old.bucket.capacity - old.bucket.level(now))
            budgets.append(_Budget(kind, limit, bucket))
        self._budgets = tuple(budgets)

    def _bucket(self, kind: BudgetKind, limit: float, now: float) -> TokenBucket:
        if kind.window == "day":
            return TokenBucket(rate=limit / self._day_seconds, capacity=max(1.0, limit), now=now)
        return TokenBucket.per_minute(limit, burst_seconds=self._burst_seconds, now=now)

    def __bool__(self) -> bool:
        return bool(self._budgets)

    def admit(self, input_tokens: int, output_tokens: int) -> Refusal | None:
        """Take one request's cost from every budget, or take nothing and say why.

        `output_tokens` is the estimate (`max_tokens`, or llmgather's default when absent);
        `settle` corrects it. None means admitted.
        """
        now = self._clock()
        worst: tuple[float, _Budget, int] | None = None
        for budget in self._budgets:
            cost = budget.kind.cost(input_tokens, output_tokens)
            if budget.kind.counts != "requests" and cost > budget.limit:
                state = self.state()
                return Refusal(budget.state(now), 0.0, cost, state, too_large=True)
            wait = budget.bucket.wait_time(now, cost)
            # The longest wait names the limit that binds: after it, the others fit too.
            if wait > 0 and (worst is None or wait > worst[0]):
                worst = (wait, budget, cost)
        if worst is not None:
            wait, budget, cost = worst
            return Refusal(budget.state(now), wait, cost, self.state())
        for budget in self._budgets:
            budget.bucket.take(now, budget.kind.cost(input_tokens, output_tokens))
        return None

    def settle(self, estimated_output: int, actual_output: int) -> None:
        """Give back what the output estimate over-reserved (or charge what it under-estimated)."""
        if estimated_output == actual_output:
            return
        now = self._clock()
        for budget in self._budgets:
            if budget.kind.settles:
                budget.bucket.give_back(now, estimated_output - actual_output)

    def state(self) -> LimitState:
        now = self._clock()
        return LimitState(tuple(budget.state(now) for budget in self._budgets))
