"""The production engine against the reference engine (issue 19): random monitors, random drives,
the same events at the same instants (to the millisecond) with the same values.

Shrunk failures are kept in ``tests/data/monitors/differential`` and replayed first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.agent.monitors.differential import (
    CASES,
    cases,
    dump,
    in_ms,
    production_events,
    reference_events,
)

KEPT = sorted(CASES.glob("*.json"))


def compare(case: dict[str, Any]) -> None:
    expected = in_ms(reference_events(case))
    got = in_ms(production_events(case))
    assert got == expected, f"engine {got}\nreference {expected}\ncase:\n{dump(case)}"


@pytest.mark.parametrize("path", KEPT, ids=[p.stem for p in KEPT])
def test_kept_cases(path: Path) -> None:
    case = json.loads(path.read_text())
    compare(case)
    pinned = json.loads(json.dumps(in_ms(reference_events(case))))
    assert pinned == case["expected"]  # the events the case was kept for


@pytest.mark.timeout(900)  # a failure shrinks for up to 300 s (Hypothesis' own limit) first
@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(cases())
def test_engine_agrees_with_the_reference(case: dict[str, Any]) -> None:
    compare(case)
