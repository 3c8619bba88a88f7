"""Prices: genai-prices' table as our `Prices` (its fast flat rates agree with its own
`calc_price` exactly), the user's file over it, and one warning per model nobody prices."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import genai_prices
import orjson
import pytest

from llmgather import ConfigurationError, PriceFile
from llmgather._types import Usage
from llmgather.pricing import STANDARD, GenaiPrices, Pricer, chain, load_prices

MODELS = [
    ("openai", "openai", "gpt-4o-mini"),
    ("openai", "openai", "gpt-4o"),
    ("gemini", "google", "gemini-2.0-flash"),
    ("gemini", "google", "gemini-1.5-pro"),  # tiered by prompt length: priced by calc_price
    ("anthropic", "anthropic", "claude-3-5-haiku-latest"),
]


def reference(provider_id: str, model: str, usage: Usage) -> Decimal:
    priced = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )
    return genai_prices.calc_price(priced, model, provider_id=provider_id).total_price


@pytest.mark.parametrize(("provider", "provider_id", "model"), MODELS)
def test_the_table_prices_as_genai_prices_does_to_the_last_digit(
    provider: str, provider_id: str, model: str
) -> None:
    prices = GenaiPrices()
    rng = random.Random(7)
    for _ in range(40):
        read, written = rng.randrange(0, 100_000), rng.randrange(0, 100_000)
        usage = Usage(
            read + written + rng.randrange(0, 200_000), rng.randrange(0, 8_000), read, written
        )
        assert prices.price(provider, model, usage, STANDARD) == reference(
            provider_id, model, usage
        )


def test_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    # claude-3-5-haiku: $0.80 input, $0.08 cache read, $1.00 cache write, $4 output per MTok.
    prices = GenaiPrices()
    model = "claude-3-5-haiku-latest"
    plain = prices.price("anthropic", model, Usage(1_000_000, 0), STANDARD)
    read = prices.price("anthropic", model, Usage(1_000_000, 0, 1_000_000), STANDARD)
    written = prices.price("anthropic", model, Usage(1_000_000, 0, 0, 1_000_000), STANDARD)
    assert (plain, read, written) == (Decimal("0.8"), Decimal("0.08"), Decimal("1"))
    # gpt-4o-mini has no cache-write price: a written token costs plain input.
    assert prices.price("openai", "gpt-4o-mini", Usage(1_000_000, 0, 0, 1_000_000), STANDARD) == (
        Decimal("0.15")
    )


def test_an_unknown_model_or_basis_has_no_price() -> None:
    prices = GenaiPrices()
    assert prices.price("openai", "my-local-model", Usage(10, 10), STANDARD) is None
    assert prices.price("openai", "gpt-4o-mini", Usage(10, 10), "batch") is None
    assert prices.source == f"genai-prices {genai_prices.__version__}"


def test_the_users_prices_win_over_the_table_and_price_unknown_models(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(
        orjson.dumps(
            {
                "gpt-4o-mini": {"input": 1, "output": 2},
                "openai:my-local-model": {"input": "0.1", "output": 0.4, "cache_read": 0.01},
            }
        )
    )
    prices = chain(str(path))
    usage = Usage(1_000, 500)
    assert prices.price("openai", "gpt-4o-mini", usage, STANDARD) == Decimal("0.002")
    assert prices.price("openai", "my-local-model", usage, STANDARD) == Decimal("0.0003")
    # What the file does not name, the table still prices.
    assert prices.price("openai", "gpt-4o", usage, STANDARD) == reference("openai", "gpt-4o", usage)
    assert "prices.json" in prices.source and "genai-prices" in prices.source
    # 400 of the 1,000 input tokens read from the cache at its price; a write costs input.
    cached = Usage(1_000, 500, cache_read_tokens=400, cache_write_tokens=100)
    assert prices.price("openai", "my-local-model", cached, STANDARD) == Decimal("0.000264")


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ({"m": {"input": 1}}, "needs both input and output"),
        ({"m": {"input": 1, "output": 1, "batch": 2}}, "unknown fields ['batch']"),
        ({"m": {"input": "cheap", "output": 1}}, "input is not a number"),
        ({"m": {"input": -1, "output": 1}}, "0 or more"),
        ({"m": 3}, "must map to an object"),
    ],
)
def test_a_malformed_price_is_refused_naming_the_model_and_field(data: dict, said: str) -> None:
    with pytest.raises(ConfigurationError, match=said.replace("[", r"\[").replace("]", r"\]")):
        load_prices(data)


def test_a_prices_file_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_prices(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigurationError, match="not JSON"):
        load_prices(tmp_path / "bad.json")


def test_a_model_nobody_prices_is_warned_about_once_naming_it_and_the_flag() -> None:
    heard: list[str] = []
    pricer = Pricer(chain({"priced": {"input": 1, "output": 1}}), "openai", "m", heard.append)
    assert [pricer.cost(None, Usage(5, 5)) for _ in range(3)] == [None] * 3
    assert pricer.cost("priced", Usage(5, 5)) == Decimal("0.00001")
    assert pricer.cost("priced", None) is None
    assert len(heard) == 1
    assert "openai:m" in heard[0] and "--prices" in heard[0]


def test_a_price_file_is_a_prices() -> None:
    found = load_prices({"m": {"input": 3, "output": 15}})
    assert isinstance(found, PriceFile)
    assert found.price("anthropic", "m", Usage(1_000_000, 0), STANDARD) == Decimal(3)


def test_pricing_reads_the_bundled_table_and_never_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket
    import threading

    def refuse(*args: object) -> None:
        raise AssertionError("pricing tried to connect")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    threads = set(threading.enumerate())
    prices = GenaiPrices()
    assert prices.price("openai", "gpt-4o", Usage(1_000, 1_000), STANDARD) == Decimal("0.0125")
    assert not genai_prices.data_snapshot.get_snapshot().from_auto_update
    assert set(threading.enumerate()) <= threads  # no updater started in the background
