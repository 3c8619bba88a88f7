"""The estimate of a run before it sends: items, invalid lines, tokens, a cost range and the
time the limits allow, tallied one item at a time (memory does not grow with the input).

    cost low      = Σ price(input_i, 0)            (input alone: the least the run can cost)
    cost expected = Σ price(input_i, expected_i)   (the output `estimate.output` expects)
    cost worst    = Σ price(input_i, max_tokens_i) (every answer as long as it may be)
    time          = 60 · max(N/rpm, tokens/tpm, input/itpm, output/otpm) seconds, and with
                    an rpd a whole day for each day's worth of items past the first

Each item is priced on its own (a tiered model's price depends on each request's input), by
the same `Prices` a run uses, so a `--prices` file counts here too.

Beside a job store (a rerun), the figures are those of the items the rerun sends: the items
whose results it keeps are left out of them, and the whole job's are given beside (`Rerun`).
Under `--max-cost` the items are summed in input order against what the cap leaves (the cap
less what the job spent): the items past it, expected and at worst, are those left unsent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from llmgather._config import Limits
from llmgather._types import Usage, cost_number
from llmgather.estimate.counting import PromptCounter, counter_for
from llmgather.estimate.job_store import FinishedJob
from llmgather.estimate.output import OutputExpectation
from llmgather.jobs.inputs import InputItem
from llmgather.pricing import STANDARD, Pricer

__all__ = ["CapCheck", "Estimate", "Rerun", "estimate_items"]

MINUTES_PER_DAY = 1440
INVALID_SHOWN = 10  # invalid lines named one by one; the rest are counted
# The budgets that pace a run, with what each counts; `Limits.budgets()` also holds caps
# (`max_cost`), which bound what is spent, not how fast: they set no time.
_PACES = ("rpm", "rpd", "tpm", "itpm", "otpm")


@dataclass(frozen=True, slots=True)
class CapCheck:
    """`--max-cost` against the estimate: what the cap leaves (`left`: the cap less what the
    job `spent` already), whether it covers the expected and the worst cost (None: unknown),
    and about how many items would be left unsent in each case."""

    max_cost: Decimal
    spent: Decimal
    covers_expected: bool | None
    covers_worst: bool | None
    unsent_expected: int | None
    unsent_worst: int | None

    @property
    def left(self) -> Decimal:
        return max(self.max_cost - self.spent, Decimal(0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd": float(self.max_cost),
            "spent_usd": cost_number(self.spent),
            "covers_expected": self.covers_expected,
            "covers_worst": self.covers_worst,
            "unsent_expected": self.unsent_expected,
            "unsent_worst": self.unsent_worst,
        }


@dataclass(frozen=True, slots=True)
class Rerun:
    """The job store beside `-o`: `kept` items whose results a rerun keeps (left out of the
    estimate's figures), what its ok lines cost (`spent`, None when one is unpriced), and the
    `whole` job's figures, every item as if none were done."""

    kept: int
    spent: Decimal | None
    whole: Estimate

    def to_dict(self) -> dict[str, Any]:
        whole = self.whole
        return {
            "kept_items": self.kept,
            "spent_usd": cost_number(self.spent),
            "whole_job": {
                "items": whole.items,
                "input_tokens": whole.input_tokens,
                "output_tokens": {"expected": whole.output_expected, "worst": whole.output_worst},
                "cost_usd": whole.costs(),
            },
        }


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a run of these items would send, cost and take. Costs are None where some model
    has no price (`unpriced` names them); `worst` figures are None when some item has no
    max_tokens and the model no bound (`unbounded` counts them); `expected` ones are None
    when the output is unknown."""

    items: int
    invalid: int
    invalid_lines: tuple[str, ...]  # the first INVALID_SHOWN invalid lines' errors
    input_tokens: int
    counted_by: tuple[str, ...]  # how input tokens were counted, per model
    approximate_because: tuple[str, ...]  # why a model's count is an approximation
    output_expected: int | None
    output_worst: int | None
    expected_from: str
    worst_from: str
    unbounded: int
    cost_input: Decimal | None
    cost_expected: Decimal | None
    cost_worst: Decimal | None
    unpriced: tuple[str, ...]
    time_expected_s: float | None
    time_worst_s: float | None
    bound_by: str | None  # the limit that sets the time, or None when none is given
    prices: str
    cap: CapCheck | None = None  # under --max-cost
    rerun: Rerun | None = None  # beside a job store

    @property
    def exact(self) -> bool:
        """Whether every input token was counted by the provider's tokenizer (or the
        simulator's own rule), not approximated."""
        return not self.approximate_because

    def to_dict(self) -> dict[str, Any]:
        """The `--json` shape (documented in the README; keys are only ever added)."""
        return {
            "items": self.items,
            "invalid": self.invalid,
            "invalid_lines": list(self.invalid_lines),
            "input_tokens": self.input_tokens,
            "input_tokens_exact": self.exact,
            "counted_by": list(self.counted_by),
            "approximate_because": list(self.approximate_because),
            "output_tokens": {
                "expected": self.output_expected,
                "worst": self.output_worst,
                "expected_from": self.expected_from,
                "worst_from": self.worst_from,
                "unbounded_items": self.unbounded,
            },
            "cost_usd": self.costs(),
            "unpriced_models": list(self.unpriced),
            "prices": self.prices,
            "time_s": {
                "expected": _seconds(self.time_expected_s),
                "worst": _seconds(self.time_worst_s),
                "bound_by": self.bound_by,
            },
            "max_cost": None if self.cap is None else self.cap.to_dict(),
            "rerun": None if self.rerun is None else self.rerun.to_dict(),
        }

    def costs(self) -> dict[str, float | None]:
        return {
            "input": _number(self.cost_input),
            "expected": _number(self.cost_expected),
            "worst": _number(self.cost_worst),
        }


@dataclass
class _Tally:
    """The running sums while the items stream past."""

    items: int = 0
    invalid: int = 0
    invalid_lines: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_expected: float = 0.0
    output_worst: int = 0
    expected_known: bool = True
    unbounded: int = 0
    cost_input: Decimal = Decimal(0)
    cost_expected: Decimal = Decimal(0)
    cost_worst: Decimal = Decimal(0)
    unpriced: set[str] = field(default_factory=set)
    counters: dict[str, PromptCounter] = field(default_factory=dict)
    # Under a cap: what it leaves, and the items whose running sum of cost goes past it.
    cap_left: Decimal | None = None
    past_cap_expected: int = 0
    past_cap_worst: int = 0


def estimate_items(
    items: Iterable[InputItem],
    *,
    provider: str,
    model: str,
    simulated: bool,
    pricer: Pricer,
    expectation: OutputExpectation,
    limits: Limits,
    max_tokens: int | None,
    finished: FinishedJob | None = None,
) -> Estimate:
    """Tally `items` as a run to `provider`:`model` would send them: each item's own model and
    max_tokens win over the run's (`model`, `max_tokens`), as in a run. Beside a `finished`
    job, the items whose results a rerun keeps are left out, and the whole job told apart."""
    spent = finished.spent_usd if finished is not None else None
    send = _Tally()
    if limits.max_cost is not None:
        send.cap_left = Decimal(str(limits.max_cost)) - (spent or Decimal(0))
    whole = _Tally() if finished is not None else None
    counters: dict[str, PromptCounter] = {}
    for item in items:
        if item.request is None:
            for tally in (send, whole) if whole is not None else (send,):
                tally.invalid += 1
                if len(tally.invalid_lines) < INVALID_SHOWN:
                    tally.invalid_lines.append(item.error or f"line {item.line}: invalid")
            continue
        request = item.request
        item_model = request.model or model
        counter = counters.get(item_model)
        if counter is None:
            counter = counters[item_model] = counter_for(provider, item_model, simulated=simulated)
        input_tokens = counter.count(request.messages)
        item_max_tokens = request.max_tokens or max_tokens
        if whole is not None:
            whole.counters[item_model] = counter
            _add(whole, item_model, input_tokens, item_max_tokens, pricer, expectation)
        if finished is not None and finished.keeps(item):
            continue
        send.counters[item_model] = counter
        _add(send, item_model, input_tokens, item_max_tokens, pricer, expectation)
    estimate = _finish(send, expectation, limits, pricer)
    if whole is None or finished is None:
        return estimate
    rerun = Rerun(finished.kept, spent, _finish(whole, expectation, limits, pricer))
    return replace(estimate, rerun=rerun)


def _add(
    tally: _Tally,
    model: str,
    input_tokens: int,
    max_tokens: int | None,
    pricer: Pricer,
    expectation: OutputExpectation,
) -> None:
    tally.items += 1
    tally.input_tokens += input_tokens

    def price(output: int) -> Decimal | None:
        return pricer.cost(model, Usage(input_tokens=input_tokens, output_tokens=output), STANDARD)

    low = price(0)
    if low is None:
        tally.unpriced.add(model)
    else:
        tally.cost_input += low
    expected = expectation.expected(max_tokens)
    if expected is None:
        tally.expected_known = False
    else:
        tally.output_expected += expected
        if low is not None:
            tally.cost_expected += _between(price, expected)
            if tally.cap_left is not None and tally.cost_expected > tally.cap_left:
                tally.past_cap_expected += 1
    worst = expectation.worst(max_tokens)
    if worst is None:
        tally.unbounded += 1
    else:
        tally.output_worst += worst
        if low is not None:
            tally.cost_worst += price(worst) or Decimal(0)
            if tally.cap_left is not None and tally.cost_worst > tally.cap_left:
                tally.past_cap_worst += 1


def _between(price: Callable[[int], Decimal | None], output: float) -> Decimal:
    """The price of a fractional `output` (an average): between those of the whole numbers
    around it, so a mean of 39.3 tokens is not priced as 39 on every item."""
    whole = math.floor(output)
    below = price(whole) or Decimal(0)
    if output == whole:
        return below
    above = price(whole + 1) or Decimal(0)
    return below + (above - below) * Decimal(str(output - whole))


def _finish(
    tally: _Tally, expectation: OutputExpectation, limits: Limits, pricer: Pricer
) -> Estimate:
    priced = not tally.unpriced
    expected_output = round(tally.output_expected) if tally.expected_known else None
    worst_output = tally.output_worst if not tally.unbounded else None
    time_expected, bound_by = _time(limits, tally.items, tally.input_tokens, expected_output)
    time_worst, worst_bound = _time(limits, tally.items, tally.input_tokens, worst_output)
    counters = tally.counters.items()
    cost_expected = tally.cost_expected if priced and tally.expected_known else None
    cost_worst = tally.cost_worst if priced and not tally.unbounded else None
    return Estimate(
        items=tally.items,
        invalid=tally.invalid,
        invalid_lines=tuple(tally.invalid_lines),
        input_tokens=tally.input_tokens,
        counted_by=tuple(sorted({counter.method for _, counter in counters})),
        approximate_because=tuple(
            sorted({f"{model}: {c.note}" for model, c in counters if not c.exact})
        ),
        output_expected=expected_output,
        output_worst=worst_output,
        expected_from=expectation.source,
        worst_from=expectation.worst_from,
        unbounded=tally.unbounded,
        cost_input=tally.cost_input if priced else None,
        cost_expected=cost_expected,
        cost_worst=cost_worst,
        unpriced=tuple(sorted(tally.unpriced)),
        time_expected_s=time_expected,
        time_worst_s=time_worst,
        bound_by=bound_by or worst_bound,
        prices=pricer.prices.source,
        cap=_cap_check(tally, limits, cost_expected, cost_worst),
    )


def _cap_check(
    tally: _Tally, limits: Limits, cost_expected: Decimal | None, cost_worst: Decimal | None
) -> CapCheck | None:
    if limits.max_cost is None or tally.cap_left is None:
        return None
    max_cost = Decimal(str(limits.max_cost))
    left = tally.cap_left

    def covers(cost: Decimal | None) -> bool | None:
        return None if cost is None else cost <= left

    expected_ok, worst_ok = covers(cost_expected), covers(cost_worst)
    return CapCheck(
        max_cost=max_cost,
        spent=max_cost - left,
        covers_expected=expected_ok,
        covers_worst=worst_ok,
        unsent_expected=None if expected_ok is None else tally.past_cap_expected,
        unsent_worst=None if worst_ok is None else tally.past_cap_worst,
    )


def _time(
    limits: Limits, items: int, input_tokens: int, output_tokens: int | None
) -> tuple[float | None, str | None]:
    """60 · max(amount / limit) over the limits given, and the limit that sets it; (None,
    None) when no limit is given, or when one needs the output and it is unknown."""
    amounts: dict[str, float | None] = {
        "rpm": items,
        "tpm": None if output_tokens is None else input_tokens + output_tokens,
        "itpm": input_tokens,
        "otpm": output_tokens,
    }
    minutes: dict[str, float] = {}
    for name, limit in limits.budgets().items():
        if limit is None or name not in _PACES:
            continue
        if name == "rpd":
            # A day's requests are not paced (`Limits`): each day past the first waits whole.
            minutes[name] = MINUTES_PER_DAY * (math.ceil(items / limit) - 1) if items else 0.0
            continue
        amount = amounts[name]
        if amount is None:
            return None, None
        minutes[name] = amount / limit
    if not minutes:
        return None, None
    bound_by = max(minutes, key=lambda name: minutes[name])
    return 60 * minutes[bound_by], bound_by


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(round(value, 6))


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
