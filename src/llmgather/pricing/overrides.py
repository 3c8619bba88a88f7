"""The user's own prices (`--prices FILE`, `Client(prices=...)`): USD per million tokens, by model.

    {"my-local-model": {"input": 0.1, "output": 0.4, "cache_read": 0.01, "cache_write": 0.125}}

A key may name the model alone or `provider:model`; `cache_read` and `cache_write` are optional
(a cache token without its own price costs plain input, as an uncached one would).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from llmgather._errors import ConfigurationError
from llmgather._types import Usage
from llmgather.pricing.base import STANDARD

__all__ = ["ModelPrice", "PriceFile", "load_prices"]

_MILLION = Decimal(1_000_000)
_FIELDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's prices in USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        tokens = (
            usage.uncached_input_tokens * self.input
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * self.output
        )
        return tokens / _MILLION


class PriceFile:
    """The `Prices` a user gave, by model name (or `provider:model`)."""

    def __init__(self, models: Mapping[str, ModelPrice], *, source: str = "user prices") -> None:
        self._models = dict(models)
        self._source = source

    @property
    def source(self) -> str:
        return self._source

    def price(self, provider: str, model: str, usage: Usage, basis: str) -> Decimal | None:
        if basis != STANDARD:
            return None
        found = self._models.get(f"{provider}:{model}") or self._models.get(model)
        return None if found is None else found.cost(usage)

    def __repr__(self) -> str:
        return f"PriceFile({sorted(self._models)})"


def load_prices(given: str | os.PathLike[str] | Mapping[str, Any]) -> PriceFile:
    """A `PriceFile` from a JSON file's path or a mapping of the same shape; a malformed one
    is refused, naming the model and the field."""
    if isinstance(given, Mapping):
        return PriceFile(_parse(given, "prices"), source="user prices")
    path = Path(given)
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as error:
        raise ConfigurationError(f"cannot read the prices file {path}: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise ConfigurationError(f"the prices file {path} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"the prices file {path} must hold a JSON object of models")
    return PriceFile(_parse(data, str(path)), source=f"prices file {path.name}")


def _parse(data: Mapping[str, Any], where: str) -> dict[str, ModelPrice]:
    models: dict[str, ModelPrice] = {}
    for model, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where}: {model!r} must map to an object of prices")
        unknown = set(entry) - set(_FIELDS)
        if unknown:
            raise ConfigurationError(
                f"{where}: {model!r} has unknown fields {sorted(unknown)};"
                f" HINT: use {', '.join(_FIELDS)} (USD per million tokens)"
            )
        values = {name: _decimal(entry[name], where, model, name) for name in entry}
        if "input" not in values or "output" not in values:
            raise ConfigurationError(f"{where}: {model!r} needs both input and output prices")
        models[str(model)] = ModelPrice(**values)
    return models


def _decimal(value: Any, where: str, model: str, name: str) -> Decimal:
    # A float goes through its shortest text (0.15, not 0.1499999...), as the user wrote it.
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidOperation
        price = Decimal(str(value))
    except InvalidOperation:
        raise ConfigurationError(f"{where}: {model!r} {name} is not a number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise ConfigurationError(f"{where}: {model!r} {name} must be a price of 0 or more")
    return price
