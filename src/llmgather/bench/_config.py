"""The sizes of each scenario, full and `--quick`, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchConfig:
    quick: bool
    repeat: int  # runs of each scenario but memory; medians are reported
    timing_sizes: tuple[int, ...]
    timing_latency_ms: float
    ceiling_rpm: float  # the TPM limit is set from the prompt mix (see _workload)
    ceiling_requests: int
    ceiling_latency_ms: float
    ceiling_concurrency: int
    overhead_requests: int
    overhead_concurrency: int
    memory_sizes: tuple[int, ...]
    memory_concurrency: int
    seams_calls: int  # SDK calls through `client.map_calls`, at `seams_rpm`
    seams_rpm: float
    seams_split_prompts: int  # prompts under ITPM and OTPM, OTPM binding
    seams_split_s: float  # what the OTPM limit is set to make them take
    scale_rpm: float  # the one key's limit the processes share; TPM from the prompt mix
    scale_requests: int  # split between the processes
    cost_cap_items: int  # capped at half of what they need
    cost_cache_items: int  # a finished job rerun with one line changed
    cost_estimate_items: int  # estimated by --dry-run, then run

    def ceiling_deadline(self, ceiling_s: float) -> float:
        """How long a ceiling contender may run before it is stopped (unfinished = failed)."""
        return ceiling_s + 20.0 if self.quick else 3.0 * ceiling_s + 60.0


FULL = BenchConfig(
    quick=False,
    repeat=3,
    timing_sizes=(5, 20, 100),
    timing_latency_ms=1000.0,
    ceiling_rpm=600.0,
    ceiling_requests=330,  # 33 s at 600 RPM
    ceiling_latency_ms=1000.0,
    ceiling_concurrency=32,
    overhead_requests=20_000,
    overhead_concurrency=256,
    memory_sizes=(100_000, 1_000_000),
    memory_concurrency=256,
    seams_calls=1000,  # 20 s at 3,000 RPM
    seams_rpm=3000.0,
    seams_split_prompts=500,
    seams_split_s=20.0,
    scale_rpm=1200.0,
    scale_requests=800,  # 40 s at 1,200 RPM
    cost_cap_items=2000,
    cost_cache_items=10_000,  # ~160 s a run at 1 s latency, concurrency 64
    cost_estimate_items=2000,
)

QUICK = BenchConfig(
    quick=True,
    repeat=1,
    timing_sizes=(5, 20),
    timing_latency_ms=1000.0,
    ceiling_rpm=1200.0,
    ceiling_requests=150,  # 7.5 s at 1,200 RPM
    ceiling_latency_ms=1000.0,
    ceiling_concurrency=32,
    overhead_requests=2_000,
    overhead_concurrency=256,
    memory_sizes=(2_000, 20_000),
    memory_concurrency=256,
    seams_calls=300,  # 6 s at 3,000 RPM
    seams_rpm=3000.0,
    seams_split_prompts=150,
    seams_split_s=6.0,
    scale_rpm=1200.0,
    scale_requests=150,  # 7.5 s at 1,200 RPM
    cost_cap_items=300,
    cost_cache_items=1000,
    cost_estimate_items=300,
)
