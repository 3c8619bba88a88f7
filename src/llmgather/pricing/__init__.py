"""What answers cost: a price source behind one small protocol, user overrides over it, and the
pricer that turns an answer's usage into money.

    Usage ─▶ Pricer(provider, model) ─▶ overrides (--prices FILE) ─▶ genai-prices ─▶ Decimal USD
                    │                    (first that knows the model)
                    └─ an unknown model: None, and one warning naming it and --prices
"""

from llmgather.pricing.base import STANDARD, Prices
from llmgather.pricing.catalogue import GenaiPrices
from llmgather.pricing.overrides import ModelPrice, PriceFile, load_prices
from llmgather.pricing.pricer import Pricer, chain

__all__ = [
    "STANDARD",
    "GenaiPrices",
    "ModelPrice",
    "PriceFile",
    "Pricer",
    "Prices",
    "chain",
    "load_prices",
]
