"""The retry policy: full jitter within bounds, server hints honoured, permanent errors final."""

from __future__ import annotations

import random

import pytest

from llmgather import (
    AuthenticationError,
    BadRequestError,
    QuotaExhaustedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    for attempts, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 4.0)]:
        delays = [policy.next_delay(ServerError("x"), attempts, rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= cap for d in delays)
        assert max(d for d in delays if d is not None) > cap * 0.8  # the whole range is used


def test_a_retry_after_hint_replaces_the_backoff_and_is_never_shortened() -> None:
    policy = RetryPolicy()
    rng = random.Random(2)
    for _ in range(100):
        delay = policy.next_delay(RateLimitError("slow down", retry_after=7.0), 1, rng)
        assert delay is not None and 7.0 <= delay <= 8.0


def test_permanent_errors_are_never_retried() -> None:
    policy = RetryPolicy()
    rng = random.Random(3)
    assert policy.next_delay(BadRequestError("bad"), 1, rng) is None
    assert policy.next_delay(AuthenticationError("who"), 1, rng) is None
    assert policy.next_delay(QuotaExhaustedError("billing"), 1, rng) is None


def test_attempts_stop_at_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=3)
    rng = random.Random(4)
    assert policy.next_delay(ServerError("x"), 2, rng) is not None
    assert policy.next_delay(ServerError("x"), 3, rng) is None


def test_a_hint_past_the_ceiling_is_reported_as_an_exhausted_quota() -> None:
    policy = RetryPolicy(max_retry_wait=60)
    error = RateLimitError("per-day quota", status_code=429, retry_after=3600)
    assert policy.next_delay(error, 1, random.Random(5)) is None
    final = policy.final_error(error)
    assert isinstance(final, QuotaExhaustedError)
    assert final.status_code == 429
    assert "3600s" in final.message and "--max-retry-wait" in final.message


def test_other_final_errors_are_unchanged() -> None:
    error = ServerError("boom", status_code=500)
    assert RetryPolicy().final_error(error) is error


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
