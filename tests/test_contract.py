"""The shared wire contract: events round-trip, topics parse, ids sort by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from agent.model import Event, EventValue, Extension
from agent.wire import Topics, WireError, event_from_json, event_to_json, uuid7


def _event() -> Event:
    return Event(
        event_id=uuid7(1_700_000_000_000),
        seq=7,
        vin="VF3ABCDEF12345678",
        fleet_id="fleet-1",
        monitor_id="oil-hot",
        event_date=datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=UTC),
        refresh=False,
        values=(EventValue("vehicle.engines.thermic.oil.temp", "131", "129"),),
        extensions=(Extension("vehicle.position", {"latitude": 48.85, "longitude": 2.35}),),
    )


def test_event_round_trips_through_json() -> None:
    event = _event()
    assert event_from_json(event_to_json(event)) == event


def test_event_date_is_utc_with_z() -> None:
    assert b'"eventDate":"2026-11-23T12:00:00.250Z"' in event_to_json(_event())


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7(ms) for ms in (1, 2, 1_000, 1_700_000_000_000)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"schema":"edgemon.event/0"}', b'{"schema":"edgemon.event/1"}'],
)
def test_bad_event_payloads_raise_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):
        event_from_json(payload)


def test_vin_of_topic() -> None:
    topics = Topics("edgemon/v1")
    assert topics.vin_of(topics.events("VIN123")) == "VIN123"
    with pytest.raises(WireError):
        topics.vin_of("other/vehicles/VIN123/events")
