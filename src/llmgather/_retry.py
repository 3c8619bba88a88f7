"""The one retry layer's policy: which failures to retry, and how long to wait before each.

Exponential backoff with full jitter (a uniform wait between 0 and the exponential cap) spreads
retries of many concurrent requests apart, so they do not come back as a synchronized herd.
A server's own hint (Retry-After, retry-after-ms, Gemini's RetryInfo) replaces the backoff:
the server knows when its budget refills. A hint beyond `max_retry_wait` means a quota that
will not recover within this job (a daily quota, say): that is reported, not waited for.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llmgather._errors import APIError, QuotaExhaustedError


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_wait: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def next_delay(self, error: APIError, attempts: int, rng: random.Random) -> float | None:
        """Seconds to wait before attempt `attempts + 1`, or None to give up with `error`."""
        if not error.retryable or attempts >= self.max_attempts:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_wait:
                return None
            # A little jitter on top of the hint, so requests told the same moment spread out.
            return error.retry_after + rng.uniform(0, min(1.0, 0.1 * error.retry_after + 0.05))
        cap = min(self.max_delay, self.base_delay * 2 ** (attempts - 1))
        return rng.uniform(0, cap)

    def final_error(self, error: APIError) -> APIError:
        """The error to report once retrying stops: a wait past the ceiling becomes a quota error."""
        if (
            error.retryable
            and error.retry_after is not None
            and error.retry_after > self.max_retry_wait
        ):
            return QuotaExhaustedError(
                f"the server asked to wait {error.retry_after:.0f}s, longer than the retry "
                f"ceiling of {self.max_retry_wait:.0f}s (a quota that will not recover within "
                f"this job; raise --max-retry-wait to wait for it): {error.message}",
                status_code=error.status_code,
                retry_after=error.retry_after,
            )
        return error
