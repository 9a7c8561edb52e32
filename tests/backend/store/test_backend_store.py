"""The SQLite store: migrations, durability across reopen, de-duplication, batching, and the
ingest core's handling of arbitrary payloads (property test)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Topics, event_to_json
from backend.errors import IngestError
from backend.ingest.guard import EVENT_REASONS
from backend.ingest.intake import EventIntake
from backend.store.sqlite import MIGRATIONS, SqliteStore
from tests.backend.conftest import (
    FLEET,
    T0,
    VIN,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)


def test_migrations_run_once_and_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    first = SqliteStore(path, durable=True)
    assert first.schema_version() == len(MIGRATIONS)
    first.put_vehicle(VIN, FLEET, T0)
    mid = add_monitor(first, monitor_definition("https://h.example/in"))
    event = make_event(mid)
    assert ingest_events(first, [event], T0) == [True]
    first.close()
    again = SqliteStore(path)
    assert again.schema_version() == len(MIGRATIONS)
    assert again.get_monitor(mid) is not None
    assert ingest_events(again, [event], T0 + 1) == [False]  # the event id is remembered
    assert again.deliveries(mid, None, 0, 10)[1] == 1
    again.close()


def test_an_open_batch_collects_until_full(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in", batch=(2, 30)))
    events = [make_event(mid, at=T0 + i) for i in range(3)]
    ingest_events(store, events, T0 + 5)
    assert store.depth() == {"open": 1, "pending": 1, "retrying": 0, "dead": 0}
    due = store.claim_due(T0 + 5, 10, {}, 8, T0 + 60)
    assert [len(d.events) for d in due] == [2]
    assert due[0].held_since == T0 + 5  # receipt, not the events' own dates
    assert [len(d.events) for d in store.claim_due(T0 + 35, 10, {}, 8, T0 + 99)] == [1]


def test_claims_respect_the_per_endpoint_limit_and_leases(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(5)], T0)
    endpoint = "https://h.example:443"
    assert len(store.claim_due(T0, 10, {endpoint: 1}, 3, T0 + 60)) == 2
    assert store.claim_due(T0 + 1, 10, {}, 3, T0 + 60) != []  # the 3 not leased yet
    assert store.claim_due(T0 + 2, 10, {}, 9, T0 + 60) == []  # all leased
    assert len(store.claim_due(T0 + 61, 10, {}, 9, T0 + 120)) == 5  # leases ran out


def test_paused_and_foreign_events_are_stored_without_delivery(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    store.set_monitor_status(mid, "Paused", T0)
    intake = EventIntake(store, Topics())
    topics = Topics()
    paused = intake.prepare(topics.events(VIN), event_to_json(make_event(mid)))
    assert paused.skip_reason == "monitor_paused" and paused.routes == ()
    other = make_event(mid, vin="OTHERVIN000000001")
    store.put_vehicle(other.vin, FLEET, T0)  # same fleet; the monitor is VIN's own
    foreign = intake.prepare(topics.events(other.vin), event_to_json(other))
    assert foreign.skip_reason == "wrong_vehicle"
    with pytest.raises(IngestError) as info:
        intake.prepare(topics.events(VIN), event_to_json(other))
    assert info.value.reason == "vin_mismatch"


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_any_payload_is_accepted_or_refused_with_a_reason(
    store: SqliteStore, payload: bytes
) -> None:
    intake = EventIntake(store, Topics())
    try:
        intake.prepare(Topics().events(VIN), payload)
    except IngestError as exc:
        assert exc.reason in EVENT_REASONS


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(
    ["eventId", "seq", "vin", "fleetId", "monitorId", "eventDate", "refresh", "values",
     "extensions", "labels", "schema"]), value=_JSON)  # fmt: skip
def test_a_valid_event_with_one_field_replaced_never_crashes_ingest(
    store: SqliteStore, field: str, value: object
) -> None:
    import json

    obj = json.loads(event_to_json(make_event("m-unknown")))
    obj[field] = value
    intake = EventIntake(store, Topics())
    try:
        prepared = intake.prepare(Topics().events(VIN), json.dumps(obj).encode())
        raise AssertionError(f"an event of an unknown monitor was accepted: {prepared}")
    except IngestError as exc:
        assert exc.reason in EVENT_REASONS | {"unknown_monitor", "fleet_mismatch"}


def test_migration_2_restarts_the_retry_window_of_live_deliveries_at_receipt(
    tmp_path: Path,
) -> None:
    """A store of schema 1 whose live deliveries counted their cap from an old eventDate."""
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version=1")
    row = "INSERT INTO deliveries (delivery_id, monitor_id, callback_name, url, endpoint,"
    row += " headers, body_attributes, batch_key, batch_size, state, event_count, first_trigger,"
    row += " received_at, next_at, policy, retry_number, retry_delay, created_at)"
    row += " VALUES (?, 'm', 'cb', 'u', 'e', '[]', '[]', '', 1, ?, 1, ?, ?, 0, 'Always', 3, 10, 0)"
    db.execute(row, ("live", "pending", T0 - 10 * 86400, T0))
    db.execute(row, ("done", "delivered", T0 - 10 * 86400, T0))
    db.commit()
    db.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        (live,) = store.claim_due(T0, 10, {}, 8, T0 + 60)
        assert live.delivery_id == "live" and live.held_since == T0
    finally:
        store.close()


def test_events_are_read_back_by_vehicle_monitor_fleet_and_time(store: SqliteStore) -> None:
    """Issue 18's reading methods, in plain SQL every store implements alike."""
    from backend.store.records import EventQuery, VehicleStatus

    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    other = add_monitor(store, monitor_definition("https://h.example/in"))
    events = [make_event(mid, at=T0 + n) for n in range(5)] + [make_event(other, at=T0 + 10)]
    ingest_events(store, events, T0 + 20)
    ids = [e.event_id for e in events]

    def page(query: EventQuery, offset: int = 0, limit: int = 60) -> tuple[list[str], int]:
        found, total = store.events_page(query, offset, limit)
        return [e.event_id for e in found], total

    assert page(EventQuery(vin=VIN)) == (ids[::-1], 6)  # newest eventDate first
    assert page(EventQuery(monitor_id=mid), 1, 2) == ([ids[3], ids[2]], 5)
    assert page(EventQuery(monitor_id=mid, since=T0 + 1, until=T0 + 3)) == (ids[3:0:-1], 3)
    assert page(EventQuery(fleets=(FLEET,))) == (ids[::-1], 6)
    assert page(EventQuery(fleets=("elsewhere",))) == ([], 0)
    assert page(EventQuery(fleets=())) == ([], 0)
    assert page(EventQuery(vin="VF3NOBODY00000000")) == ([], 0)
    (newest,), _ = store.events_page(EventQuery(vin=VIN), 0, 1)
    assert newest.received_at == T0 + 20 and newest.monitor_id == other
    assert newest.skip_reason is None and '"vin"' in newest.webhook_json

    assert store.vehicle_status(VIN) is None
    status = VehicleStatus(VIN, True, "2030-01-01T00:00:00.000Z", "1.0", 3, "gps", T0)
    store.set_vehicle_status(status)
    store.set_vehicle_status(status)  # replaced, not duplicated
    assert store.vehicle_status(VIN) == status
