"""Fault injection: parse a `kind=rate,...` spec and draw the faults of each request.

Most kinds are exclusive (a request gets at most one, so their rates add up to at most 1).
`preempt` is drawn apart, because it is not about the request itself but what its arrival does
to the others: it cuts every stream the server is sending, as llama-cpp-python's server does
when a new request comes in. `preempt=1` is that server; it combines with any other fault.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

# Statuses the simulator can inject as a whole error response, in that provider's shape.
STATUS_FAULTS = ("429", "500", "502", "503", "504", "529")
# Faults that change how an otherwise normal answer reaches the wire. `done_early` ends a
# stream with the dialect's end event but no finish reason (OpenAI's `data: [DONE]`, as
# llama-cpp-python's server does when interrupted); it leaves plain answers alone.
WIRE_FAULTS = ("reset", "stall", "malformed", "cut", "done_early")
# The provider's "out of quota" answer (billing, credits, a daily quota): permanent, so a
# client that retries it is wrong.
QUOTA_FAULT = "quota"
# The provider's "spend limit reached" 429 (a monthly cap on what the account may spend):
# permanent too, though it comes as a 429 (Anthropic's even as a rate_limit_error).
SPEND_FAULT = "spend"
# An answered arrival cuts every running stream; drawn apart from the exclusive kinds above.
PREEMPT_FAULT = "preempt"
FAULT_KINDS = (*STATUS_FAULTS, *WIRE_FAULTS, QUOTA_FAULT, SPEND_FAULT, PREEMPT_FAULT)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Fault kinds with their per-request probabilities; empty means no faults."""

    rates: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for kind, rate in self.rates:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {kind!r} must be within [0, 1], got {rate!r}")
        total = _exclusive_total(self.rates)
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g}, more than 1")

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        """Parse `"500=0.1,reset=0.02"`; a ValueError names the piece that is wrong."""
        if not spec or not spec.strip():
            return cls()
        rates: dict[str, float] = {}
        for piece in spec.split(","):
            piece = piece.strip()
            if not piece:
                continue
            kind, sep, value = piece.partition("=")
            kind = kind.strip().lower()
            if not sep:
                raise ValueError(
                    f"fault {piece!r} has no rate: write it as KIND=RATE, e.g. 500=0.1"
                )
            if kind not in FAULT_KINDS:
                raise ValueError(
                    f"unknown fault kind in {piece!r} (known: {', '.join(FAULT_KINDS)})"
                )
            try:
                rate = float(value)
            except ValueError:
                raise ValueError(f"fault rate in {piece!r} is not a number") from None
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate in {piece!r} must be within [0, 1]")
            rates[kind] = rates.get(kind, 0.0) + rate
        total = _exclusive_total(rates.items())
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"fault rates in {spec!r} add up to {total:g}, more than 1 "
                f"({PREEMPT_FAULT} aside, a request gets at most one fault)"
            )
        if rates.get(PREEMPT_FAULT, 0.0) > 1.0 + 1e-9:
            raise ValueError(f"fault rate of {PREEMPT_FAULT} in {spec!r} is more than 1")
        return cls(tuple(rates.items()))

    def __bool__(self) -> bool:
        return any(rate > 0 for _, rate in self.rates)

    def __str__(self) -> str:
        return ",".join(f"{kind}={rate:g}" for kind, rate in self.rates)


def _exclusive_total(rates: Iterable[tuple[str, float]]) -> float:
    return sum(rate for kind, rate in rates if kind != PREEMPT_FAULT)


class FaultPicker:
    """Draws faults from seeded RNGs, so a run with the same arrival order repeats exactly."""

    __slots__ = ("_preempt", "_preempt_rng", "_rng", "_table")

    def __init__(self, plan: FaultPlan, seed: int) -> None:
        self._rng = random.Random(f"faults:{seed}")
        # Its own RNG, so adding `preempt` to a plan leaves the other faults' draws unchanged.
        self._preempt_rng = random.Random(f"preempt:{seed}")
        table: list[tuple[float, str]] = []
        cumulative = 0.0
        preempt = 0.0
        for kind, rate in plan.rates:
            if kind == PREEMPT_FAULT:
                preempt = rate
            elif rate > 0:
                cumulative += rate
                table.append((cumulative, kind))
        self._table = tuple(table)
        self._preempt = preempt

    def preempts(self) -> bool:
        """Whether this arrival cuts the streams in progress (drawn once per answered request)."""
        if self._preempt <= 0:
            return False
        return self._preempt >= 1 or self._preempt_rng.random() < self._preempt

    def pick(self) -> str | None:
        if not self._table:
            return None  # no draw at all: an empty plan costs nothing per request
        x = self._rng.random()
        for cumulative, kind in self._table:
            if x < cumulative:
                return kind
        return None
