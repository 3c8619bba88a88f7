"""The estimate of a run before it sends: items, invalid lines, tokens, a cost range and the
time the limits allow, tallied one item at a time (memory does not grow with the input).

    cost low      = Σ price(input_i, 0)            (input alone: the least the run can cost)
    cost expected = Σ price(input_i, expected_i)   (the output `estimate.output` expects)
    cost worst    = Σ price(input_i, max_tokens_i) (every answer as long as it may be)
    time          = 60 · max(N/rpm, tokens/tpm, input/itpm, output/otpm) seconds, and with
                    an rpd a whole day for each day's worth of items past the first

Each item is priced on its own (a tiered model's price depends on each request's input), by
the same `Prices` a run uses, so a `--prices` file counts here too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmgather._config import Limits
from llmgather._types import Usage
from llmgather.estimate.counting import PromptCounter, counter_for
from llmgather.estimate.output import OutputExpectation
from llmgather.jobs.inputs import InputItem
from llmgather.pricing import STANDARD, Pricer

__all__ = ["Estimate", "estimate_items"]

MINUTES_PER_DAY = 1440
INVALID_SHOWN = 10  # invalid lines named one by one; the rest are counted


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
            "cost_usd": {
                "input": _number(self.cost_input),
                "expected": _number(self.cost_expected),
                "worst": _number(self.cost_worst),
            },
            "unpriced_models": list(self.unpriced),
            "prices": self.prices,
            "time_s": {
                "expected": _seconds(self.time_expected_s),
                "worst": _seconds(self.time_worst_s),
                "bound_by": self.bound_by,
            },
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
) -> Estimate:
    """Tally `items` as a run to `provider`:`model` would send them: each item's own model and
    max_tokens win over the run's (`model`, `max_tokens`), as in a run."""
    tally = _Tally()
    for item in items:
        if item.request is None:
            tally.invalid += 1
            if len(tally.invalid_lines) < INVALID_SHOWN:
                tally.invalid_lines.append(item.error or f"line {item.line}: invalid")
            continue
        request = item.request
        item_model = request.model or model
        counter = tally.counters.get(item_model)
        if counter is None:
            counter = tally.counters[item_model] = counter_for(
                provider, item_model, simulated=simulated
            )
        _add(tally, item_model, counter.count(request.messages), request.max_tokens or max_tokens,
             pricer, expectation)  # fmt: skip
    return _finish(tally, expectation, limits, pricer)


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
    worst = expectation.worst(max_tokens)
    if worst is None:
        tally.unbounded += 1
    else:
        tally.output_worst += worst
        if low is not None:
            tally.cost_worst += price(worst) or Decimal(0)


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
        cost_expected=tally.cost_expected if priced and tally.expected_known else None,
        cost_worst=tally.cost_worst if priced and not tally.unbounded else None,
        unpriced=tuple(sorted(tally.unpriced)),
        time_expected_s=time_expected,
        time_worst_s=time_worst,
        bound_by=bound_by or worst_bound,
        prices=pricer.prices.source,
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
        if limit is None:
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
