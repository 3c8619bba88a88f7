"""The one retry layer's policy: which failures to retry, and how long to wait before each.

Exponential backoff with full jitter (a uniform wait between 0 and the exponential cap) spreads
retries of many concurrent requests apart, so they do not come back as a synchronized herd.
A server's own hint (Retry-After, retry-after-ms, Gemini's RetryInfo) replaces the backoff:
the server knows when its budget refills. A hint beyond `max_retry_wait` means a quota that
will not recover within this job (a daily quota, say): that is reported, not waited for.

A server that is down (connections refused, 503s with no Retry-After) is not the items'
fault: `Outage` tells a server down for everyone from one item's bad luck, so the items wait
for the server, up to `max_retry_wait`, without spending their attempts. A connection that
closes after the request was written is not an outage: the server received the request (and
may bill it), so each one spends an attempt, and `max_attempts` bounds what is sent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from llmgather._config import DEFAULT_MAX_ATTEMPTS
from llmgather._errors import APIConnectionError, APIError, ConnectError, QuotaExhaustedError


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
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

    def pause_for(self, error: APIError) -> float | None:
        """How long a 429 or an outage holds every send: the server's hint, or None for the
        limiter's own cool-down. A hint past the ceiling holds no one: the item fails."""
        if error.retry_after is not None and error.retry_after <= self.max_retry_wait:
            return error.retry_after
        return None

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
                f"this job; raise the ceiling to wait for it: --max-retry-wait, or "
                f"RetryPolicy(max_retry_wait=…)): {error.message}",
                status_code=error.status_code,
                retry_after=error.retry_after,
            )
        return error

    def unreachable_error(self, error: APIError, lasted: float, *, sent: bool) -> APIError:
        """The error of an item given up on because the server stayed down past the ceiling."""
        return type(error)(
            f"{'' if sent else 'not sent: '}the server has been unreachable for {lasted:.0f}s, "
            f"longer than the retry ceiling of {self.max_retry_wait:.0f}s (run the failed "
            f"items again once it is back, or raise the ceiling to wait longer: "
            f"--retry-failed and --max-retry-wait for the CLI; retry_failed=True for "
            f"run_job and RetryPolicy(max_retry_wait=…) in the library): "
            f"{error.message}",
            status_code=error.status_code,
        )


def is_outage(error: APIError) -> bool:
    """A failure that says the server is not there, not that the request was bad: no
    connection could be made, or a 503 with no Retry-After (a server still starting)."""
    if isinstance(error, ConnectError):
        return True
    return error.status_code == 503 and error.retry_after is None


def gave_up(error: APIError, sends: int) -> APIError:
    """The error of an item whose attempts ran out, saying how many times it went out when the
    last failure leaves that in doubt (a connection closed after the request was written):
    each of those may have reached the server, and be billed."""
    if not isinstance(error, APIConnectionError) or isinstance(error, ConnectError) or not sends:
        return error
    times = "once" if sends == 1 else f"{sends} times"
    return type(error)(f"sent {times}; {error.message}", status_code=error.status_code)


class Outage:
    """Whether the server is down for everyone, judged from the order in which answers arrive.

    A streak of `CONFIRMED` outage failures, of at least two different items, with no answer of
    any other kind between them, is an outage. A refused connection or a 503 now and then (with
    answers between), or one item failing alone again and again, is that item's own failure
    and spends its attempts, so they still bound it. Any other answer ends the streak.
    `lasted` measures the outage from its first failure.
    """

    CONFIRMED = 3

    __slots__ = ("_first", "_several", "last_error", "probing", "since", "streak")

    def __init__(self) -> None:
        self.streak = 0
        self.since: float | None = None
        self.last_error: APIError | None = None
        self.probing = False  # past the ceiling, one request at a time checks if it is back
        self._first: object = None  # the streak's first item, to tell if several items fail
        self._several = False

    def failed(self, error: APIError, now: float, item: object) -> bool:
        """One more outage failure, of `item`; True if it confirms (or continues) an outage."""
        if self.streak == 0:
            self.since = now
            self._first = item
        elif item is not self._first:
            self._several = True
        self.streak += 1
        self.last_error = error
        return self.confirmed

    def answered(self) -> None:
        self.streak = 0
        self.since = None
        self.last_error = None
        self._first = None
        self._several = False

    @property
    def confirmed(self) -> bool:
        return self._several and self.streak >= self.CONFIRMED

    def lasted(self, now: float) -> float:
        """How long the server has been failing (0.0 while it answers)."""
        return 0.0 if self.since is None else now - self.since

    def given_up(self, now: float, ceiling: float) -> bool:
        """True once a confirmed outage has lasted longer than `ceiling`."""
        return self.confirmed and self.lasted(now) > ceiling
