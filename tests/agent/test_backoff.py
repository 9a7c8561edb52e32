"""agent.backoff: the one backoff of every retry loop of the agent (property-tested)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import Backoff, Retries

steps = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)
attempts = st.integers(min_value=-5, max_value=10_000)
jitters = st.floats(min_value=-1.0, max_value=2.0, allow_nan=False)


@given(steps, steps, attempts, jitters)
def test_a_delay_is_between_half_its_ceiling_and_the_ceiling_never_above_the_cap(
    first: float, cap: float, attempt: int, jitter: float
) -> None:
    backoff = Backoff(first, cap)
    ceiling = backoff.ceiling(attempt)
    delay = backoff.delay(attempt, jitter)
    assert ceiling / 2 <= delay <= ceiling <= cap
    assert ceiling == min(cap, first * 2.0 ** max(0, min(attempt, 64)))


@given(steps, steps, st.integers(min_value=0, max_value=200), st.floats(0.0, 1.0))
def test_ceilings_never_shrink_and_jitter_orders_the_delays_within_one(
    first: float, cap: float, attempt: int, jitter: float
) -> None:
    backoff = Backoff(first, cap)
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1)
    assert (
        backoff.delay(attempt, 0.0) <= backoff.delay(attempt, jitter) <= backoff.delay(attempt, 1.0)
    )
    assert backoff.delay(attempt, 1.0) == backoff.ceiling(attempt)


def test_retries_double_up_to_the_cap_and_reset() -> None:
    retries = Retries(Backoff(0.5, 4.0))  # no rng: each delay is the ceiling
    assert [retries.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert retries.peek() == 4.0
    retries.reset()
    assert retries.next_delay() == 0.5


def test_jittered_retries_spread_vehicles_that_failed_together() -> None:
    delays = {Retries(Backoff(1.0, 1.0), random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) == 20
    assert all(0.5 <= d <= 1.0 for d in delays)


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 5.0)])
def test_steps_must_be_positive(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(first, cap)
