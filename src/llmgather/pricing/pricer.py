"""The cost of one answer: its target's provider and model priced by the first source that
knows it, with one warning per model that none knows."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from llmgather._types import Usage
from llmgather.pricing.base import STANDARD, Prices
from llmgather.pricing.catalogue import GenaiPrices
from llmgather.pricing.overrides import load_prices

__all__ = ["Chain", "Pricer", "chain"]

logger = logging.getLogger("llmgather")
_MAX_UNKNOWN = 1000  # models warned of once each; past that, no more warnings


class Chain:
    """Several `Prices`, the first that knows a model answering (the user's before the table)."""

    def __init__(self, *sources: Prices) -> None:
        self._sources = sources

    @property
    def source(self) -> str:
        return " over ".join(source.source for source in self._sources)

    def price(self, provider: str, model: str, usage: Usage, basis: str) -> Decimal | None:
        for source in self._sources:
            if (found := source.price(provider, model, usage, basis)) is not None:
                return found
        return None


def chain(given: Prices | str | os.PathLike[str] | Mapping[str, Any] | None) -> Prices:
    """The prices a client uses: a user's (a `Prices`, a JSON file's path, a mapping) over
    genai-prices' table, or the table alone."""
    if given is None:
        return GenaiPrices()
    user = load_prices(given) if isinstance(given, str | os.PathLike | Mapping) else given
    return Chain(user, GenaiPrices())


class Pricer:
    """Prices the answers of one provider: `cost(model, usage)` in USD (`model` None: the
    target's), or None (warned once per model) when no source knows the model.

    A simulated target is priced as the real model of its name (`sim:gpt-4o-mini` as OpenAI's
    `gpt-4o-mini`), so every test and benchmark shows real figures.
    """

    def __init__(
        self,
        prices: Prices,
        provider: str,
        model: str,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        """`warn` hears the warning of a model with no price (the library's log by default;
        the CLI's console, which silences that log)."""
        self.prices = prices
        self.provider = provider
        self.model = model
        self._warn = warn or logger.warning
        self._unknown: set[str] = set()

    def cost(self, model: str | None, usage: Usage | None, basis: str = STANDARD) -> Decimal | None:
        if usage is None:
            return None
        model = model or self.model
        found = self.prices.price(self.provider, model, usage, basis)
        # Bounded: a service prices the models its clients name, which are theirs to choose.
        if found is None and model not in self._unknown and len(self._unknown) < _MAX_UNKNOWN:
            self._unknown.add(model)
            self._warn(
                f"no price is known for {self.provider}:{model}, so its cost is null;"
                " HINT: give its prices in USD per million tokens with --prices FILE"
                f' (JSON: {{"{model}": {{"input": 0.15, "output": 0.6}}}})'
                " or Client(prices=...)"
            )
        return found
