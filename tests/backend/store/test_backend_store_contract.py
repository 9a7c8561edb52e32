"""The store contract, each test on both stores (``store`` is parametrised in conftest.py):
what the engine relies on, whichever store is configured. The last tests are PostgreSQL's own:
several workers claiming from one database at once."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from agent.wire import uuid7
from backend.delivery.dispatcher import judge
from backend.delivery.webhooks import Answer
from backend.errors import StoreError
from backend.store import postgres
from backend.store.postgres import PostgresStore
from backend.store.records import (
    AttemptResult,
    ClaimedDelivery,
    MonitorRecord,
    Store,
    VehicleMonitorState,
)
from scripts.broker import free_port
from tests.backend.conftest import (
    FLEET,
    T0,
    VIN,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)
from tests.support.postgres import PostgresServer

OTHER = "VF3TEST0000000002"
MAX_AGE = 3 * 24 * 3600.0


def fleet_monitor(store: Store) -> str:
    """A fleet monitor: every vehicle of FLEET (VIN and OTHER) fires it."""
    mid = uuid7()
    definition = monitor_definition("https://h.example/in")
    store.create_monitor(MonitorRecord(mid, "fleet", FLEET, definition, "Running", T0, T0))
    store.put_vehicle(OTHER, FLEET, T0)
    return mid


def _date(webhook_json: str) -> str:
    found = json.loads(webhook_json)["eventDate"]
    assert isinstance(found, str)
    return found


def answer(claim: ClaimedDelivery, status: int, now: float) -> AttemptResult:
    return judge(claim, Answer(status), started=now, now=now, max_age=MAX_AGE, none_delay=10.0)


def test_in_order_claims_take_one_delivery_per_vehicle_at_a_time(store: Store) -> None:
    mid = fleet_monitor(store)
    events = [make_event(mid, vin=v, at=T0 + i) for i in range(3) for v in (VIN, OTHER)]
    ingest_events(store, events, T0)
    first = store.claim_due(T0, 50, {}, 50, T0 + 60, in_order=True)
    assert sorted(VIN in c.events[0] for c in first) == [False, True]  # one per vehicle
    assert store.claim_due(T0, 50, {}, 50, T0 + 60, in_order=True) == []  # the next ones wait
    store.record_results([answer(c, 200, T0 + 1) for c in first], T0 + 1)
    second = store.claim_due(T0 + 1, 50, {}, 50, T0 + 60, in_order=True)
    assert len(second) == 2
    # Each vehicle's second event, never its third.
    firsts = {c.events[0] for c in first}
    assert all(c.events[0] not in firsts for c in second)
    # Each vehicle's first two events, in order: the claims carry them in arrival order.
    for vin in (VIN, OTHER):
        sent = [e for c in (*first, *second) for e in c.events if vin in e]
        own = [e.event_date.isoformat()[:19] for e in events if e.vin == vin]
        assert [own.index(_date(e)[:19]) for e in sent] == [0, 1]
    # Without the order, everything due goes at once.
    assert len(store.claim_due(T0 + 99, 50, {}, 50, T0 + 160)) == 2 + 2


def test_a_failing_delivery_holds_its_vehicle_in_order(store: Store) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in", policy="Always"))
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(2)], T0)
    (claim,) = store.claim_due(T0, 50, {}, 50, T0 + 60, in_order=True)
    store.record_results([answer(claim, 500, T0)], T0)
    view = store.get_delivery(claim.delivery_id)
    assert view is not None and view.state == "pending" and view.attempts == 1
    assert view.next_at is not None and view.next_at > T0
    assert store.claim_due(T0, 50, {}, 50, T0 + 60, in_order=True) == []
    (again,) = store.claim_due(view.next_at, 50, {}, 50, view.next_at + 60, in_order=True)
    assert again.delivery_id == claim.delivery_id  # the retry first, then the next event
    store.record_results([answer(again, 200, view.next_at)], view.next_at)
    (nxt,) = store.claim_due(view.next_at, 50, {}, 50, view.next_at + 60, in_order=True)
    assert nxt.delivery_id != claim.delivery_id


def test_a_lease_taken_over_repeats_the_same_delivery_id_and_events(store: Store) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in", batch=(3, 30)))
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(3)], T0)
    (first,) = store.claim_due(T0, 10, {}, 8, T0 + 30)  # a worker leases it, then dies
    assert store.claim_due(T0 + 29, 10, {}, 8, T0 + 60) == []  # leased
    (taken,) = store.claim_due(T0 + 30, 10, {}, 8, T0 + 60)  # the lease ran out
    assert taken.delivery_id == first.delivery_id  # the webhook-id
    assert taken.events == first.events and len(taken.events) == 3  # the body
    assert taken.tries == first.tries == 0


def test_results_are_recorded_and_a_410_fails_the_monitor(store: Store) -> None:
    ok = add_monitor(store, monitor_definition("https://ok.example/in"))
    gone = add_monitor(store, monitor_definition("https://gone.example/in", policy="Always"))
    ingest_events(store, [make_event(ok), *(make_event(gone, at=T0 + i) for i in range(3))], T0)
    claims = store.claim_due(T0, 10, {}, 1, T0 + 60)  # one per endpoint
    assert sorted(c.monitor_id for c in claims) == sorted([ok, gone])
    store.record_results(
        [answer(c, 200 if c.monitor_id == ok else 410, T0 + 1) for c in claims], T0 + 2
    )
    delivered, total = store.deliveries(ok, "delivered", 0, 10)
    assert total == 1 and delivered[0].delivered_at == T0 + 2
    assert [a.outcome for a in delivered[0].history] == ["delivered"]
    assert store.deliveries(gone, "dead", 0, 10)[1] == 3
    monitor = store.get_monitor(gone)
    assert monitor is not None and monitor.status == "Failed"
    assert store.depth() == {"open": 0, "pending": 0, "retrying": 0, "dead": 3}


def test_a_monitor_in_retry_holds_its_new_deliveries_until_it_recovers(store: Store) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in", policy="Always"))
    ingest_events(store, [make_event(mid)], T0)
    (claim,) = store.claim_due(T0, 10, {}, 8, T0 + 60)
    failed = answer(claim, 503, T0)
    store.record_results([failed], T0)
    ingest_events(store, [make_event(mid, at=T0 + 1)], T0 + 1)
    assert store.claim_due(T0 + 1, 10, {}, 8, T0 + 60) == []  # held behind the retry
    assert store.depth()["retrying"] == 1 and store.depth()["pending"] == 1
    assert failed.next_at is not None
    (retry,) = store.claim_due(failed.next_at, 10, {}, 8, failed.next_at + 60)
    store.record_results([answer(retry, 200, failed.next_at)], failed.next_at)
    (held,) = store.claim_due(failed.next_at, 10, {}, 8, failed.next_at + 60)
    assert held.delivery_id != claim.delivery_id


def test_dead_letters_expire_resend_and_deleted_monitors(store: Store) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in", policy="Always"))
    ingest_events(store, [make_event(mid)], T0)
    (claim,) = store.claim_due(T0, 10, {}, 8, T0 + 60)
    store.record_results([answer(claim, 500, T0)], T0)
    ingest_events(store, [make_event(mid, at=T0 + 1)], T0 + 1)
    assert store.expire(T0 + 10, MAX_AGE) == 0
    assert store.expire(T0 + 2 + MAX_AGE, MAX_AGE) == 1  # held too long behind the retry
    (dead,), _ = store.deliveries(mid, "dead", 0, 10)
    assert dead.reason.startswith("expired")
    assert store.resend(dead.delivery_id, T0 + MAX_AGE + 3, MAX_AGE)
    assert not store.resend(dead.delivery_id, T0 + MAX_AGE + 3, MAX_AGE)
    store.delete_monitor(mid, T0 + MAX_AGE + 4)
    assert store.get_monitor(mid) is None
    assert store.monitor_owner(mid) == ("vehicle", VIN)
    assert store.deliveries(mid, "dead", 0, 10)[1] == 2
    assert store.claim_due(T0 + 2 * MAX_AGE, 10, {}, 8, T0 + 2 * MAX_AGE) == []


def test_vehicles_monitors_and_the_routing_version(store: Store) -> None:
    before = store.routing_version()
    assert store.put_vehicle(OTHER, FLEET, T0) is True
    assert store.put_vehicle(OTHER, "fleet-2", T0 + 1) is False  # moved
    assert store.vehicle_fleet(OTHER) == "fleet-2"
    assert store.routing_version() > before
    vehicles, total = store.list_vehicles(FLEET, 0, 10)
    assert total == 1 and [v.vin for v in vehicles] == [VIN]
    assert store.delete_vehicle(FLEET, OTHER) is False  # not in that fleet
    assert store.delete_vehicle("fleet-2", OTHER) is True
    assert store.get_vehicle(OTHER) is None
    ids = [add_monitor(store, monitor_definition(f"https://h{i}.example/in")) for i in range(3)]
    page, total = store.list_monitors("vehicle", VIN, 1, 1)
    assert total == 3 and [m.monitor_id for m in page] == [ids[1]]
    version = store.routing_version()
    store.set_monitor_status(ids[0], "Paused", T0 + 5)
    store.replace_monitor(ids[1], {"label": "x"}, T0 + 6)
    assert store.routing_version() > version
    paused, replaced = store.get_monitor(ids[0]), store.get_monitor(ids[1])
    assert paused is not None and paused.status == "Paused" and paused.updated_at == T0 + 5
    assert replaced is not None and replaced.definition == {"label": "x"}
    assert {m.monitor_id for m in store.live_monitors()} == set(ids)


def test_vehicle_reports_are_replaced_and_cleared(store: Store) -> None:
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    reasons = [{"code": "x", "message": "y"}]
    store.set_vehicle_state(VehicleMonitorState(VIN, mid, "rejected", reasons, "h1", "t1"))
    store.set_vehicle_state(VehicleMonitorState(VIN, mid, "applied", [], "h2", "t2"))
    assert store.vehicle_states(mid) == [VehicleMonitorState(VIN, mid, "applied", [], "h2", "t2")]
    store.clear_vehicle_state(mid, VIN)
    assert store.vehicle_states(mid) == []
    store.ping()


# -- PostgreSQL: several workers on one database --------------------------------------------


def test_workers_claiming_at_once_never_take_the_same_delivery(postgres_url: str) -> None:
    workers = [PostgresStore(postgres_url, pool_size=2) for _ in range(4)]
    try:
        seed = workers[0]
        seed.put_vehicle(VIN, FLEET, T0)
        mid = add_monitor(seed, monitor_definition("https://h.example/in"))
        ingest_events(seed, [make_event(mid, at=T0 + i / 100) for i in range(200)], T0)
        taken: Counter[str] = Counter()
        lock = threading.Lock()
        start = threading.Barrier(len(workers))

        def work(store: PostgresStore) -> None:
            start.wait()
            while claims := store.claim_due(T0, 7, {}, 1000, T0 + 60):
                with lock:
                    taken.update(c.delivery_id for c in claims)

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(taken) == 200 and set(taken.values()) == {1}  # each exactly once
    finally:
        for w in workers:
            w.close()


def test_in_order_holds_across_workers(postgres_url: str) -> None:
    one, two = PostgresStore(postgres_url), PostgresStore(postgres_url)
    try:
        one.put_vehicle(VIN, FLEET, T0)
        mid = add_monitor(one, monitor_definition("https://h.example/in"))
        ingest_events(one, [make_event(mid, at=T0 + i) for i in range(2)], T0)
        (first,) = one.claim_due(T0, 10, {}, 8, T0 + 60, in_order=True)
        assert two.claim_due(T0, 10, {}, 8, T0 + 60, in_order=True) == []  # one has vehicle 1
        one.record_results([answer(first, 200, T0)], T0)
        (second,) = two.claim_due(T0, 10, {}, 8, T0 + 60, in_order=True)
        assert second.delivery_id != first.delivery_id
    finally:
        one.close()
        two.close()


def test_an_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open the store"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=1)


def test_a_connection_cut_by_the_server_is_one_store_error_then_replaced(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A database restart or failover cuts every connection: the transaction that meets the
    cut fails with ``StoreError`` (its caller retries), the pool opens a new connection."""
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        version = store.routing_version()
        name = postgres_url.rsplit("/", 1)[1]
        postgres_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        with pytest.raises(StoreError):
            store.routing_version()
        assert store.routing_version() == version
    finally:
        store.close()


def test_workers_starting_together_migrate_an_empty_database_once(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.database(migrated=False)
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def open_one() -> None:
        start.wait()
        try:
            opened.append(PostgresStore(url, pool_size=1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(opened) == 3
        assert {s.schema_version() for s in opened} == {len(postgres.MIGRATIONS)}
        assert opened[0]._read("SELECT count(*) FROM schema_version") == [(1,)]
    finally:
        for s in opened:
            s.close()
        postgres_server.drop(url)


def test_a_value_postgresql_cannot_store_is_a_value_error_and_the_store_goes_on(
    postgres_url: str,
) -> None:
    """PostgreSQL text cannot hold NUL (SQLite's can): ``ValueError``, not ``StoreError``, so
    ingest drops that one event instead of retrying its whole group for ever."""
    store = PostgresStore(postgres_url, pool_size=1)
    try:
        bad = MonitorRecord("m\x00x", "vehicle", VIN, {}, "Running", T0, T0)
        with pytest.raises(ValueError, match="NUL"):
            store.create_monitor(bad)
        assert store.get_monitor("m\x00x".replace("\x00", "")) is None
        store.ping()
    finally:
        store.close()
