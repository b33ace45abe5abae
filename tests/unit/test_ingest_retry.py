"""Ingest retry timing: exponential backoff with jitter, Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from services.ingest.retry import CircuitBreaker, RetryPolicy, parse_retry_after


def test_delay_doubles_within_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_s=0.1, max_s=2.0, rng=random.Random(7))
    for failures, ceiling in [
        (1, 0.1),
        (2, 0.2),
        (3, 0.4),
        (4, 0.8),
        (5, 1.6),
        (6, 2.0),
        (40, 2.0),
    ]:
        for _ in range(50):
            delay = policy.delay(failures)
            assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_delays() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=10.0, rng=random.Random(1))
    assert len({round(policy.delay(3), 6) for _ in range(20)}) > 10


def test_retry_after_is_honoured_as_a_floor() -> None:
    policy = RetryPolicy(base_s=0.1, max_s=1.0, rng=random.Random(3))
    assert policy.delay(1, retry_after_s=7.0) == 7.0
    assert policy.delay(1, retry_after_s=0.0) <= 0.1


def test_absurd_retry_after_is_bounded() -> None:
    policy = RetryPolicy(base_s=0.1, max_s=1.0)
    assert policy.delay(1, retry_after_s=86_400) == 60.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        (None, None),
        ("", None),
        ("-1", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_breaker_opens_after_consecutive_quick_failures() -> None:
    breaker = CircuitBreaker(failures_to_open=3, slow_s=1.0)
    breaker.failed(0.01)
    breaker.failed(0.01)
    assert not breaker.open
    breaker.failed(0.01)
    assert breaker.open


def test_breaker_opens_at_once_on_a_slow_failure() -> None:
    breaker = CircuitBreaker(failures_to_open=3, slow_s=1.0)
    breaker.failed(1.0)  # a write that waited out its timeout: a black hole
    assert breaker.open


def test_breaker_closes_and_forgets_failures_on_success() -> None:
    breaker = CircuitBreaker(failures_to_open=2, slow_s=1.0)
    breaker.failed(5.0)
    breaker.succeeded()
    assert not breaker.open
    breaker.failed(0.01)
    assert not breaker.open
