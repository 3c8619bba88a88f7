"""The latency model: time to first token plus a per-token rate, jittered by a seeded RNG."""

from __future__ import annotations

import random

from llmgather.sim.text import MEAN_WORDS

TTFT_SHARE = 0.25  # of the mean total latency, spent before the first token


class LatencyModel:
    """Draws (time to first token, seconds per output token) for each response."""

    __slots__ = ("_jitter", "_per_token", "_rng", "_ttft", "enabled")

    def __init__(self, latency_ms: float, seed: int, jitter: float = 0.5) -> None:
        """Each delay is scaled by a factor drawn uniformly from [1 - jitter, 1 + jitter]."""
        self.enabled = latency_ms > 0
        self._jitter = jitter
        total = latency_ms / 1000.0
        self._ttft = total * TTFT_SHARE
        # Spread over the mean answer length, so the mean total latency is `latency_ms`.
        self._per_token = total * (1 - TTFT_SHARE) / MEAN_WORDS
        self._rng = random.Random(f"latency:{seed}")

    def draw(self) -> tuple[float, float]:
        if not self.enabled:
            return 0.0, 0.0
        if not self._jitter:
            return self._ttft, self._per_token
        low, high, uniform = 1 - self._jitter, 1 + self._jitter, self._rng.uniform
        return self._ttft * uniform(low, high), self._per_token * uniform(low, high)
