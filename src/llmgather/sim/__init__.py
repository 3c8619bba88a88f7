"""llmgather's simulated LLM API: OpenAI, Gemini and Anthropic wire formats on one port.

    async with await start_simulator(SimConfig(rpm=60, faults=FaultPlan.parse("500=0.1"))) as sim:
        ...  # point any SDK or llmgather at sim.base_url

Answers are deterministic (prompt + seed), rate limits are enforced with llmgather's own token
bucket, and faults (errors, resets, stalls, malformed or cut bodies) are injected on demand.
"""

from __future__ import annotations

from llmgather.sim.config import SimConfig
from llmgather.sim.faults import FAULT_KINDS, FaultPlan
from llmgather.sim.server import EmbeddedSimulator, RunningSimulator, run_forever, start_simulator
from llmgather.sim.text import answer_chunks, answer_text

__all__ = [
    "FAULT_KINDS",
    "EmbeddedSimulator",
    "FaultPlan",
    "RunningSimulator",
    "SimConfig",
    "answer_chunks",
    "answer_text",
    "run_forever",
    "start_simulator",
]
