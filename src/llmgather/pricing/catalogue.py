"""Prices from `genai-prices`, the maintained offline table, read from its bundled snapshot.

Only `calc_price` is used: it reads the snapshot shipped in the package. Its `UpdatePrices`
(which fetches a newer table over HTTP) is never started, so pricing never touches the network.
The package is imported on first use: its table takes ~0.2 s to load.

`calc_price` takes ~0.1 ms, too slow to run for each of 20,000 answers a second. A model whose
prices are flat (not tiered by input length) costs `base + input × a + output × b`: the three
rates are read once from `calc_price` itself and each answer is priced from them, exactly (a
test checks they agree). A tiered model is priced by `calc_price` every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import Final

from llmgather._types import Usage
from llmgather.pricing.base import STANDARD
from llmgather.providers.registry import PROVIDERS

__all__ = ["GenaiPrices"]

_MILLION: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class _Flat:
    """A model's flat rates: per request, per input token and per output token (× 1e6)."""

    base: Decimal
    input: Decimal
    output: Decimal

    def cost(self, usage: Usage) -> Decimal:
        return (
            self.base
            + (usage.input_tokens * self.input + usage.output_tokens * self.output) / _MILLION
        )


class GenaiPrices:
    """The `Prices` of `genai-prices` (standard basis only: batch and flex are not priced yet)."""

    def __init__(self) -> None:
        # By (provider id, model): its flat rates, None for a tiered model, or False when unknown.
        self._rates: dict[tuple[str, str], _Flat | bool | None] = {}

    @property
    def source(self) -> str:
        return f"genai-prices {version('genai-prices')}"

    def price(self, provider: str, model: str, usage: Usage, basis: str) -> Decimal | None:
        if basis != STANDARD:
            return None
        spec = PROVIDERS.get(provider)
        key = ((spec.prices_id if spec else None) or provider, model)
        rates = self._rates.get(key, True)
        if rates is True:
            rates = self._rates[key] = _flat_rates(*key)
        if rates is False:
            return None
        if isinstance(rates, _Flat):
            return rates.cost(usage)
        return _calc(key[0], model, usage.input_tokens, usage.output_tokens)

    def __repr__(self) -> str:
        return f"GenaiPrices({self.source!r})"


def _calc(provider_id: str, model: str, input_tokens: int, output_tokens: int) -> Decimal | None:
    import genai_prices  # here: a 0.2 s import, paid only once something is priced

    usage = genai_prices.Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    try:
        found = genai_prices.calc_price(
            usage, model, provider_id=provider_id, genai_request_timestamp=datetime.now(UTC)
        )
    except LookupError:
        return None
    return found.total_price


def _flat_rates(provider_id: str, model: str) -> _Flat | bool | None:
    """The model's flat rates; None when its prices are tiered; False when it is unknown."""
    import genai_prices.types

    base = _calc(provider_id, model, 0, 0)
    if base is None:
        return False
    found = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=0, output_tokens=0), model, provider_id=provider_id
    )
    tiered = any(
        isinstance(value, genai_prices.types.TieredPrices)
        for value in vars(found.model_price).values()
    )
    if tiered:
        return None
    per_input = _calc(provider_id, model, _MILLION, 0)
    per_output = _calc(provider_id, model, 0, _MILLION)
    assert per_input is not None and per_output is not None  # the same model, found just now
    return _Flat(base, per_input - base, per_output - base)
