"""How many output tokens an item is expected to produce, and at most, before anything is sent.

The worst case is the item's `max_tokens` (its line's, else `--max-tokens`, else the
provider's own default where it has one, as Anthropic's adapter sends). With none, an answer
is bounded only by the model: no worst case is claimed. The built-in simulator's answers are
16-64 words, one token each, so there its bound is known.

The expected output, the first that applies:
1. `--expect-output-tokens N`: the user's figure;
2. the average output of the finished items of the job store beside `-o`, when one exists
   (a rerun, or a first run cut short: the answers so far are the best sample there is);
3. the built-in simulator: the mean of its answer lengths (16-64 words, decided by a hash
   byte), cut by each item's `max_tokens` exactly as it cuts answers;
4. otherwise unknown: the low end of the cost range is then the input alone.
Each is cut to the item's `max_tokens`: no answer is longer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from llmgather.estimate.job_store import FinishedJob
from llmgather.sim.text import MAX_WORDS, MIN_WORDS, answer_length

__all__ = ["OutputExpectation", "expectation_for"]


@dataclass(frozen=True, slots=True)
class OutputExpectation:
    """`mean` output tokens of an uncapped answer (None: unknown), `source` what says so;
    `bound`: the longest answer when an item sets no max_tokens (None: unbounded)."""

    mean: float | None
    source: str
    bound: int | None = None
    simulated: bool = False
    # What sets the worst case, for the user: an item's max_tokens, and where none is given,
    # the bound's source.
    worst_from: str = "max_tokens"

    def worst(self, max_tokens: int | None) -> int | None:
        """The most output an item with this `max_tokens` may produce (None: unbounded)."""
        if max_tokens is None:
            return self.bound
        return max_tokens if self.bound is None else min(max_tokens, self.bound)

    def expected(self, max_tokens: int | None) -> float | None:
        """The output an item with this `max_tokens` is expected to produce."""
        if self.simulated:
            return _simulator_mean(max_tokens)
        if self.mean is None:
            return None
        return self.mean if max_tokens is None else min(self.mean, max_tokens)


def expectation_for(
    given: int | None,
    finished: FinishedJob | None,
    *,
    simulated: bool,
    default_max_tokens: int | None,
) -> OutputExpectation:
    """The expectation for a run (see the module's list): `given` is --expect-output-tokens,
    `finished` the job store beside `-o` (read-only), `default_max_tokens` what the provider's
    adapter sends when an item sets none."""
    bound = MAX_WORDS if simulated else default_max_tokens
    worst_from = (
        "max_tokens, else the simulator's longest answer"
        if simulated
        else "max_tokens, else the provider's default"
        if default_max_tokens is not None
        else "max_tokens"
    )
    return _expectation(given, finished, simulated, bound, worst_from)


def _expectation(
    given: int | None,
    finished: FinishedJob | None,
    simulated: bool,
    bound: int | None,
    worst_from: str,
) -> OutputExpectation:
    if given is not None:
        return OutputExpectation(
            float(given), "--expect-output-tokens", bound, worst_from=worst_from
        )
    mean = finished.average_output if finished is not None else None
    if finished is not None and mean is not None:
        return OutputExpectation(
            mean,
            f"the average of {finished.ok:,} finished items in the job store",
            bound,
            worst_from=worst_from,
        )
    if simulated:
        return OutputExpectation(
            _simulator_mean(None),
            f"the simulator's answers ({MIN_WORDS}-{MAX_WORDS} tokens)",
            bound,
            simulated=True,
            worst_from=worst_from,
        )
    return OutputExpectation(
        None, "no figure: pass --expect-output-tokens N", bound, worst_from=worst_from
    )


@cache
def _simulator_mean(max_tokens: int | None) -> float:
    """E[min(L, max_tokens)] for the simulator's answer length L, over the 256 values of the
    hash byte that decides it (`sim.text.answer_length`)."""
    cap = MAX_WORDS if max_tokens is None else max_tokens
    return sum(min(answer_length(byte), cap) for byte in range(256)) / 256
