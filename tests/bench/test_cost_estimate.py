"""bench cost, part 3, run small: the dry run's estimate against a real run's measured cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgather.bench.cost_estimate import estimate_against_run


@pytest.mark.timeout(120)
@pytest.mark.parametrize("max_tokens", [None, 32])
def test_the_estimate_is_within_15_percent_of_the_measured_cost(
    tmp_path: Path, max_tokens: int | None
) -> None:
    result = estimate_against_run(60, tmp_path, max_tokens=max_tokens)
    assert result.items == 60 and result.max_tokens == max_tokens
    assert abs(result.error_pct) <= 15, result
    assert result.error_pct == round(
        100 * (result.estimated_usd - result.measured_usd) / result.measured_usd, 2
    )
    # The simulator bills its own count, which the estimate uses: exact.
    assert result.input_tokens_estimated == result.input_tokens_measured
    assert result.counted_by == ["the simulator's own count"]
    assert result.worst_usd is not None and result.measured_usd <= result.worst_usd
    # The real tokenizer counts the same prompts apart from the simulator's ~4 characters.
    assert result.input_tokens_tiktoken is not None
    assert result.input_tokens_tiktoken != result.input_tokens_measured
    assert set(result.to_dict()) >= {"estimated_usd", "measured_usd", "error_pct"}
