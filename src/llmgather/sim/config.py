"""The simulator's settings: one frozen, keyword-only object built at the edge (CLI, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmgather.sim.faults import FaultPlan
from llmgather.sim.limits import BUDGET_KIND_NAMES, DAY_SECONDS


@dataclass(frozen=True, kw_only=True, slots=True)
class SimConfig:
    """How the simulated API behaves.

    `latency_ms` is the mean total time of a response: about a quarter of it before the first
    token, the rest spread over the output tokens. 0 answers at once (no sleeps at all).
    `latency_jitter` scales each delay by a seeded factor in [1 - j, 1 + j]; 0 makes it exact.
    `capacity` is how many requests are worked on at once (0 = unlimited); beyond it requests
    queue, as on a real server. A body over `max_body_bytes` is refused with the provider's
    "too large" error (Anthropic allows 32 MB).

    Rate limits, each None for none: `rpm` and `rpd` requests per minute and per day, `tpm`
    tokens (input + output) per minute, `itpm` and `otpm` input and output tokens per minute
    (Anthropic's limits). `burst_seconds` is how much of a minute's limit may go at once;
    `day_seconds` is the length of the simulated day, so a test can see a day's budget refill
    without waiting one. `limit_headers=False` announces no limit in any header (as many
    OpenAI-compatible servers and gateways do), so a client learns only from its 429s.
    `POST /_sim/limits` changes the limits while the simulator runs.
    """

    rpm: float | None = None
    rpd: float | None = None
    tpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    latency_ms: float = 0.0
    latency_jitter: float = 0.5
    seed: int = 0
    faults: FaultPlan = field(default_factory=FaultPlan)
    require_key: str | None = None
    stall_s: float = 30.0
    fault_retry_after_s: float = 1.0
    capacity: int = 0
    burst_seconds: float = 1.0
    day_seconds: float = DAY_SECONDS
    max_body_bytes: int = 32 * 1024 * 1024
    limit_headers: bool = True

    def __post_init__(self) -> None:
        for name in BUDGET_KIND_NAMES:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms!r}")
        if not 0 <= self.latency_jitter <= 1:
            raise ValueError(f"latency_jitter must be within [0, 1], got {self.latency_jitter!r}")
        if self.stall_s < 0 or self.fault_retry_after_s < 0:
            raise ValueError("stall_s and fault_retry_after_s must be >= 0")
        if self.capacity < 0:
            raise ValueError(f"capacity must be >= 0 (0 = unlimited), got {self.capacity!r}")
        if self.burst_seconds <= 0:
            raise ValueError(f"burst_seconds must be positive, got {self.burst_seconds!r}")
        if self.day_seconds <= 0:
            raise ValueError(f"day_seconds must be positive, got {self.day_seconds!r}")
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes!r}")
