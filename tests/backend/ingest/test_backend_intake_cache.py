"""Ingest's routing cache: monitors and vehicles are read once, and a change made through
another connection to the same store (the API in another process) takes effect on the next
event, even when the change keeps the same ``updated_at``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.wire import Topics, event_to_json
from backend.errors import IngestError
from backend.ingest.intake import EventIntake
from backend.store.records import IncomingEvent, MonitorRecord
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import FLEET, T0, VIN, add_monitor, make_event, monitor_definition

TOPICS = Topics()


class CountingStore(SqliteStore):
    """The real store, counting the reads routing makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, durable=True)
        self.monitor_reads = 0
        self.vehicle_reads = 0

    def get_monitor(self, monitor_id: str) -> MonitorRecord | None:
        self.monitor_reads += 1
        return super().get_monitor(monitor_id)

    def vehicle_fleet(self, vin: str) -> str | None:
        self.vehicle_reads += 1
        return super().vehicle_fleet(vin)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[CountingStore, SqliteStore]]:
    """(ingest's connection, the API's connection) to one file."""
    ingest = CountingStore(tmp_path / "backend.db")
    api = SqliteStore(tmp_path / "backend.db")
    try:
        yield ingest, api
    finally:
        ingest.close()
        api.close()


def prepare(intake: EventIntake, monitor_id: str, vin: str = VIN) -> IncomingEvent:
    return intake.prepare(TOPICS.events(vin), event_to_json(make_event(monitor_id, vin=vin)))


def test_a_group_reads_each_monitor_and_vehicle_once(
    stores: tuple[CountingStore, SqliteStore],
) -> None:
    ingest, api = stores
    mid = add_monitor(api, monitor_definition("https://h.example/in"))
    intake = EventIntake(ingest, TOPICS)
    with intake.one_version():
        routed = [prepare(intake, mid) for _ in range(50)]
    assert all(len(e.routes) == 1 for e in routed)
    assert (ingest.monitor_reads, ingest.vehicle_reads) == (1, 1)
    for _ in range(20):  # outside a group: one version check each, still no re-read
        prepare(intake, mid)
    assert (ingest.monitor_reads, ingest.vehicle_reads) == (1, 1)


def test_changes_through_another_connection_take_effect(
    stores: tuple[CountingStore, SqliteStore],
) -> None:
    ingest, api = stores
    mid = add_monitor(api, monitor_definition("https://first.example/in"))
    intake = EventIntake(ingest, TOPICS)
    assert prepare(intake, mid).routes[0].url == "https://first.example/in"
    # every change below keeps updated_at = T0: the version counter, not the clock, sees it
    api.set_monitor_status(mid, "Paused", T0)
    assert prepare(intake, mid).skip_reason == "monitor_paused"
    api.set_monitor_status(mid, "Running", T0)
    api.replace_monitor(mid, monitor_definition("https://second.example/in"), T0)
    assert prepare(intake, mid).routes[0].url == "https://second.example/in"
    api.put_vehicle(VIN, "fleet-9", T0)  # moved: the event's claim of FLEET no longer agrees
    with pytest.raises(IngestError) as moved:
        prepare(intake, mid)
    assert moved.value.reason == "fleet_mismatch"
    api.put_vehicle(VIN, FLEET, T0)
    assert len(prepare(intake, mid).routes) == 1
    api.delete_monitor(mid, T0)
    with pytest.raises(IngestError) as deleted:
        prepare(intake, mid)
    assert deleted.value.reason == "unknown_monitor"
    with pytest.raises(IngestError):
        prepare(intake, "m-late")
    late = monitor_definition("https://h.example/in")
    api.create_monitor(MonitorRecord("m-late", "vehicle", VIN, late, "Running", T0, T0))
    assert len(prepare(intake, "m-late").routes) == 1


def test_a_change_inside_a_group_waits_for_the_next_group(
    stores: tuple[CountingStore, SqliteStore],
) -> None:
    ingest, api = stores
    mid = add_monitor(api, monitor_definition("https://h.example/in"))
    intake = EventIntake(ingest, TOPICS)
    with intake.one_version():
        assert len(prepare(intake, mid).routes) == 1
        api.set_monitor_status(mid, "Paused", T0)
        assert len(prepare(intake, mid).routes) == 1  # one snapshot per group
    with intake.one_version():
        assert prepare(intake, mid).skip_reason == "monitor_paused"


def test_unknown_ids_cannot_grow_the_cache(stores: tuple[CountingStore, SqliteStore]) -> None:
    ingest, api = stores
    api.put_vehicle(VIN, FLEET, T0)
    intake = EventIntake(ingest, TOPICS, max_cached=3)
    with intake.one_version():
        for i in range(10):
            with pytest.raises(IngestError):
                prepare(intake, f"m-{i}")
    assert ingest.monitor_reads == 10
    assert len(intake._monitors) <= 3


def test_the_version_moves_with_every_kind_of_change(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.db")
    seen = [store.routing_version()]
    mid = add_monitor(store, monitor_definition("https://h.example/in"))  # vehicle + monitor
    seen.append(store.routing_version())
    store.set_monitor_status(mid, "Paused", T0)
    seen.append(store.routing_version())
    store.delete_vehicle(FLEET, VIN)
    seen.append(store.routing_version())
    store.close()
    assert seen == sorted(set(seen))  # strictly increasing


def test_cached_routes_stay_per_vehicle(stores: tuple[CountingStore, SqliteStore]) -> None:
    ingest, api = stores
    other = "VF3OTHER000000002"
    api.put_vehicle(VIN, FLEET, T0)
    api.put_vehicle(other, FLEET, T0)
    definition = monitor_definition(
        "https://h.example/in", attributes=[{"type": "Header", "key": "X-Vin", "value": "$vin"}]
    )
    api.create_monitor(MonitorRecord("m-fleet", "fleet", FLEET, definition, "Running", T0, T0))
    intake = EventIntake(ingest, TOPICS)
    with intake.one_version():
        for _ in range(3):
            for vin in (VIN, other):
                (routed,) = prepare(intake, "m-fleet", vin).routes
                assert routed.headers == (("X-Vin", vin),)
