"""Prices from `genai-prices`, the maintained offline table, read from its bundled snapshot.

Only `calc_price` is used: it reads the snapshot shipped in the package. Its `UpdatePrices`
(which fetches a newer table over HTTP) is never started, so pricing never touches the network.
The package is imported on first use: its table takes ~0.2 s to load.

`calc_price` takes ~0.1 ms, too slow to run for each of 20,000 answers a second. A model whose
prices are flat (not tiered by input length) costs `base + uncached input × a + cache reads × r
+ cache writes × w + output × b`: the rates are read once from `calc_price` itself and each
answer is priced from them, exactly (a test checks they agree). A tiered model is priced by
`calc_price` every time. genai-prices counts the input as our `Usage` does (cached tokens
included), so the usage goes to it as it is.
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
    """A model's flat rates: per request, and per uncached input, cache-read, cache-write and
    output token (× 1e6)."""

    base: Decimal
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    def cost(self, usage: Usage) -> Decimal:
        tokens = (
            usage.uncached_input_tokens * self.input
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
            + usage.output_tokens * self.output
        )
        return self.base + tokens / _MILLION


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
        return _calc(key[0], model, usage)

    def __repr__(self) -> str:
        return f"GenaiPrices({self.source!r})"


def _calc(provider_id: str, model: str, usage: Usage) -> Decimal | None:
    import genai_prices  # here: a 0.2 s import, paid only once something is priced

    counted = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    try:
        found = genai_prices.calc_price(
            counted, model, provider_id=provider_id, genai_request_timestamp=datetime.now(UTC)
        )
    except LookupError:
        return None
    return found.total_price


def _flat_rates(provider_id: str, model: str) -> _Flat | bool | None:
    """The model's flat rates; None when its prices are tiered; False when it is unknown."""
    import genai_prices.types

    base = _calc(provider_id, model, Usage())
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
    # A cache rate the table lacks is the input's (genai-prices' own fallback), read the same way.
    rates = [
        _calc(provider_id, model, usage)
        for usage in (
            Usage(input_tokens=_MILLION),
            Usage(output_tokens=_MILLION),
            Usage(input_tokens=_MILLION, cache_read_tokens=_MILLION),
            Usage(input_tokens=_MILLION, cache_write_tokens=_MILLION),
        )
    ]
    per_input, per_output, per_read, per_write = (rate - base for rate in rates if rate is not None)
    return _Flat(base, per_input, per_output, per_read, per_write)
