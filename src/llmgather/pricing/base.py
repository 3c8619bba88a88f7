"""The price protocol: what one answer's usage costs, for a provider, a model and a basis."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from llmgather._types import Usage

__all__ = ["STANDARD", "Prices"]

STANDARD = "standard"  # the basis of an answer sent through the ordinary, synchronous API


class Prices(Protocol):
    """A price source. `price` is None for a model it does not know: never a made-up number."""

    @property
    def source(self) -> str:
        """What the prices come from and its version (`genai-prices 0.2.5`), for the record."""
        ...

    def price(self, provider: str, model: str, usage: Usage, basis: str) -> Decimal | None:
        """The cost in USD of `usage` on `model` of `provider` (a registry name) at `basis`."""
        ...
