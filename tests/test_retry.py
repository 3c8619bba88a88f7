"""The retry policy: full jitter within bounds, server hints honoured, permanent errors final."""

from __future__ import annotations

import random

import pytest

from llmgather import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    QuotaExhaustedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from llmgather._retry import Outage, gave_up, is_outage


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


def test_refused_connections_and_503s_say_the_server_is_down() -> None:
    assert is_outage(ConnectError("cannot connect to 127.0.0.1:8000 (refused)"))
    assert is_outage(ServerError("Loading model", status_code=503))
    assert not is_outage(ServerError("boom", status_code=500))
    assert not is_outage(RateLimitError("slow down", status_code=429))


def test_a_request_that_reached_the_server_is_no_sign_of_an_outage() -> None:
    # The server read the request and closed: it is there, and may bill it.
    assert not is_outage(APIConnectionError("the server closed the connection without answering"))
    # A 503 that says when to come back is a busy server, not one that is down.
    assert not is_outage(ServerError("busy", status_code=503, retry_after=2.0))


def test_an_item_given_up_after_closed_connections_says_how_often_it_went_out() -> None:
    closed = APIConnectionError("the server closed the connection without answering")
    error = gave_up(closed, 2)
    assert type(error) is APIConnectionError
    assert error.message == "sent 2 times; the server closed the connection without answering"
    assert gave_up(closed, 1).message.startswith("sent once; ")
    refused = ConnectError("cannot connect to 127.0.0.1:8000 (refused)")
    assert gave_up(refused, 0) is refused
    boom = ServerError("boom", status_code=500)
    assert gave_up(boom, 3) is boom  # a status answer leaves no doubt that it arrived


def test_an_outage_is_a_streak_of_several_items_failing_with_no_answer_between() -> None:
    outage, down = Outage(), ConnectError("refused")
    a, b = object(), object()
    assert not outage.failed(down, 10.0, a)
    assert not outage.failed(down, 11.0, a)
    assert not outage.failed(down, 12.0, a)  # one item alone: its own failure
    assert outage.failed(down, 13.0, b)
    assert outage.lasted(20.0) == 10.0 and outage.last_error is down
    assert not outage.given_up(20.0, 300.0) and outage.given_up(311.0, 300.0)
    outage.answered()
    assert not outage.confirmed and outage.lasted(400.0) == 0.0
    assert not outage.failed(down, 500.0, b)  # a new streak starts from scratch


def test_a_server_down_past_the_ceiling_is_reported_with_how_long() -> None:
    policy = RetryPolicy(max_retry_wait=120)
    down = ServerError("Loading model", status_code=503)
    error = policy.unreachable_error(down, 125.4, sent=False)
    assert isinstance(error, ServerError) and error.status_code == 503
    assert error.message.startswith("not sent: the server has been unreachable for 125s")
    assert "retry ceiling of 120s" in error.message and "Loading model" in error.message


def test_a_pause_takes_the_servers_hint_unless_past_the_ceiling() -> None:
    policy = RetryPolicy(max_retry_wait=60)
    assert policy.pause_for(RateLimitError("x", retry_after=5)) == 5
    assert policy.pause_for(RateLimitError("x", retry_after=600)) is None
    assert policy.pause_for(RateLimitError("x")) is None
