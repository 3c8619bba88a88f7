"""What a run would send, cost and take, before anything is sent (`llmgather run --dry-run`).

items ─▶ counting (tiktoken offline, the simulator's rule, or the approximation, said)
      ─▶ job_store (beside -o, read-only: the items a rerun keeps, what the job spent)
      ─▶ output (--expect-output-tokens, a job store's average, the simulator's lengths)
      ─▶ figures (tokens, cost range priced per item, time the limits allow, --max-cost)
"""

from llmgather.estimate.counting import PromptCounter, counter_for
from llmgather.estimate.figures import CapCheck, Estimate, Rerun, estimate_items
from llmgather.estimate.job_store import FinishedJob, open_finished_job
from llmgather.estimate.output import OutputExpectation, expectation_for

__all__ = [
    "CapCheck",
    "Estimate",
    "FinishedJob",
    "OutputExpectation",
    "PromptCounter",
    "Rerun",
    "counter_for",
    "estimate_items",
    "expectation_for",
    "open_finished_job",
]
