"""The scenarios by name: `llmgather bench NAME` runs `RUNNERS[NAME]`. Each starts its
simulator(s), runs its contenders as subprocesses and returns one row per contender (medians over
repeats) plus what the rows need to be read."""

from __future__ import annotations

from collections.abc import Callable

from llmgather.bench.ceiling import run_ceiling
from llmgather.bench.cost import run_cost
from llmgather.bench.gateway import run_gateway
from llmgather.bench.memory import run_memory
from llmgather.bench.overhead import run_overhead
from llmgather.bench.results import ScenarioResult
from llmgather.bench.scale import run_scale
from llmgather.bench.seams import run_seams
from llmgather.bench.timing import run_timing

RUNNERS: dict[str, Callable[..., ScenarioResult]] = {
    "timing": run_timing,
    "ceiling": run_ceiling,
    "overhead": run_overhead,
    "memory": run_memory,
    "seams": run_seams,
    "scale": run_scale,
    "gateway": run_gateway,
    "cost": run_cost,
}
