"""Reconnect delays and connect-error wording (pure parts of agent.publisher)."""

from __future__ import annotations

import random
import ssl

from hypothesis import given
from hypothesis import strategies as st

from agent.publisher import backoff_delay, describe_connect_error


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_backoff_stays_within_half_step_and_cap(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, 0.5, 30.0, random.Random(seed))
    step = min(30.0, 0.5 * 2**attempt)
    assert step / 2 <= delay <= step <= 30.0


def test_backoff_grows_then_saturates_with_jitter() -> None:
    rng = random.Random(1)
    first = [backoff_delay(0, 1.0, 8.0, rng) for _ in range(50)]
    late = [backoff_delay(10, 1.0, 8.0, rng) for _ in range(50)]
    assert max(first) <= 1.0 < min(late)
    assert len(set(late)) > 40  # jitter: agents do not reconnect in lockstep


def test_connect_errors_read_clearly() -> None:
    refused = describe_connect_error(ConnectionRefusedError(111, "refused"), "h", 1)
    assert refused == "connection to h:1 refused (broker down?)"
    unknown = ssl.SSLCertVerificationError(1, "certificate verify failed")
    unknown.verify_message = "unable to get local issuer certificate"
    text = describe_connect_error(unknown, "h", 8883)
    assert "not trusted" in text and "local issuer" in text and "mqtt.ca_file" in text
    assert "timed out" in describe_connect_error(TimeoutError(), "h", 1)
