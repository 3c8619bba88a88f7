"""`Client(cache=…)` against a simulator that counts what it receives: the provider-native
fields a line of a job cannot set (`extra`: top_p, stop, seed) are keyed too, a stream is
answered from the cache, and a hit spends nothing of the limiter's budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import llmgather
from llmgather import Request
from llmgather.sim import EmbeddedSimulator, SimConfig


@pytest.fixture
def counted() -> Iterator[EmbeddedSimulator]:
    with EmbeddedSimulator(SimConfig(seed=1)) as sim:
        yield sim


def received(sim: EmbeddedSimulator) -> int:
    count = sim.stats["received"]
    assert isinstance(count, int)
    return count


def client(sim: EmbeddedSimulator, cache: object, **options: object) -> llmgather.Client:
    return llmgather.Client(
        "openai:gpt-4o-mini", base_url=sim.base_url + "/v1", api_key="k", cache=cache,
        defaults={"temperature": 0}, **options,
    )  # fmt: skip


@pytest.mark.parametrize(
    "extra", [{"top_p": 0.5}, {"stop": ["zzz"]}, {"seed": 7}, {"presence_penalty": 0.1}]
)
async def test_a_change_of_a_provider_native_field_misses(
    tmp_path: Path, counted: EmbeddedSimulator, extra: dict[str, object]
) -> None:
    plain = Request.from_prompt("Why is the sky blue?", temperature=0, max_tokens=100)
    async with client(counted, tmp_path / "cache.sqlite") as llm:
        first = await llm.complete_result(plain)
        assert (await llm.complete_result(plain)).cached
        assert received(counted) == 1
        changed = await llm.complete_result(plain.replace(extra=extra))
        assert received(counted) == 2 and not changed.cached
        again = await llm.complete_result(plain.replace(extra=extra))
        assert received(counted) == 2 and again.cached
    assert not first.cached and first.cost is not None and first.cost > 0


async def test_a_stream_is_answered_from_what_a_plain_call_kept(
    tmp_path: Path, counted: EmbeddedSimulator
) -> None:
    async with client(counted, str(tmp_path / "cache.sqlite")) as llm:
        text = await llm.complete("Tell me about rivers.")
        pieces = [piece async for piece in llm.stream("Tell me about rivers.")]
    assert "".join(pieces) == text
    assert received(counted) == 1


async def test_hits_spend_no_rate_budget(tmp_path: Path, counted: EmbeddedSimulator) -> None:
    prompts = [f"Question {i}?" for i in range(20)]
    path = tmp_path / "cache.sqlite"
    async with client(counted, path) as llm:
        await llm.gather(prompts)
    # A limit of 1 request a minute: 20 sends would take 20 minutes; 20 hits take none of it.
    async with client(counted, path, rpm=1) as llm:
        results = await llm.gather(prompts)
        stats = llm.statistics()
    assert all(result.cached and result.cost == 0 for result in results)
    assert stats.cached == 20 and stats.sent == 0 and stats.done == 20
    assert received(counted) == 20


async def test_an_unknown_cache_value_is_refused() -> None:
    with pytest.raises(TypeError, match="cache= takes"):
        llmgather.Client(cache=3.5)  # type: ignore[arg-type]
