"""Fixtures of the daemon tests: synthetic events (the engine's Event type, built by hand)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from agent.model import Event, EventValue
from agent.wire import uuid7

VIN = "VF3DAEMON00000001"


def make_event(seq: int, monitor_id: str = "oil-hot", vin: str = VIN) -> Event:
    return Event(
        event_id=uuid7(),
        seq=seq,
        vin=vin,
        fleet_id="fleet-1",
        monitor_id=monitor_id,
        event_date=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        refresh=False,
        values=(EventValue("vehicle.engines.thermic.oil.temp", str(100 + seq)),),
    )


@pytest.fixture
def event_factory() -> Callable[..., Event]:
    return make_event
