"""What a run would send, cost and take, before anything is sent (`llmgather run --dry-run`).

items ─▶ counting (tiktoken offline, the simulator's rule, or the approximation, said)
      ─▶ output (--expect-output-tokens, a job store's average, the simulator's lengths)
      ─▶ figures (tokens, cost range priced per item, time the limits allow)
"""

from llmgather.estimate.counting import PromptCounter, counter_for
from llmgather.estimate.figures import Estimate, estimate_items
from llmgather.estimate.output import OutputExpectation, expectation_for

__all__ = [
    "Estimate",
    "OutputExpectation",
    "PromptCounter",
    "counter_for",
    "estimate_items",
    "expectation_for",
]
