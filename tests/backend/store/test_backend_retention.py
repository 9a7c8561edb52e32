"""Retention and dead letters in bulk on the SQLite store (issue 15): ``purge`` deletes final
deliveries by age with their attempts and the events nothing refers to any more, in bounded
batches, and never a live delivery; ``resend_dead`` puts a monitor's dead letters back in line;
the purge loop of the backend empties a backlog batch by batch."""

from __future__ import annotations

import asyncio
import sqlite3

from backend.delivery.retention import RetentionConfig, purge_loop, purge_once
from backend.metrics import Metrics
from backend.store.records import Attempt, AttemptResult
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import (
    T0,
    ManualClock,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)


def _finish(store: SqliteStore, monitor_id: str, state: str, at: float, count: int = 1) -> None:
    """Ingest ``count`` events for the monitor at ``at`` and take their deliveries to ``state``
    (``pending`` leaves them in retry)."""
    ingest_events(store, [make_event(monitor_id, at=at + i / 1000) for i in range(count)], at)
    claims = store.claim_due(at, 100, {}, 100, at + 60)
    results = []
    for claim in claims:
        outcome = "delivered" if state == "delivered" else "failed"
        attempt = Attempt(
            claim.delivery_id, 1, at, 0.1, outcome, 200 if state == "delivered" else 500
        )  # type: ignore[arg-type]
        nxt = at + 10 if state == "pending" else None
        results.append(AttemptResult(claim.delivery_id, attempt, monitor_id, state, nxt))  # type: ignore[arg-type]
    store.record_results(results, at)


def _rows(store: SqliteStore, table: str) -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_purge_deletes_by_age_and_keeps_dead_letters_longer(store: SqliteStore) -> None:
    done = add_monitor(store, monitor_definition("https://a.example"))
    failed = add_monitor(store, monitor_definition("https://b.example"))
    retrying = add_monitor(store, monitor_definition("https://c.example", policy="Always"))
    _finish(store, done, "delivered", T0)
    _finish(store, failed, "dead", T0)
    _finish(store, retrying, "pending", T0)
    # an event stored without a delivery (its monitor is paused): kept as long as delivered ones
    paused = add_monitor(store, monitor_definition("https://d.example"))
    store.set_monitor_status(paused, "Paused", T0)
    ingest_events(store, [make_event(paused)], T0)
    assert (_rows(store, "events"), _rows(store, "deliveries"), _rows(store, "attempts")) == (
        4,
        3,
        3,
    )

    nothing = store.purge(T0, T0, 100)
    assert nothing == {"deliveries": 0, "attempts": 0, "delivery_events": 0, "events": 0}

    counts = store.purge(T0 + 3600, T0, 100)  # delivered ones older than an hour go
    assert counts == {"deliveries": 1, "attempts": 1, "delivery_events": 1, "events": 2}
    assert store.deliveries(done, None, 0, 10)[1] == 0
    assert store.deliveries(failed, "dead", 0, 10)[1] == 1  # still re-deliverable
    assert store.deliveries(retrying, "pending", 0, 10)[1] == 1

    counts = store.purge(T0 + 3600, T0 + 3600, 100)  # now the dead letters too
    assert counts["deliveries"] == 1 and counts["events"] == 1
    assert store.deliveries(failed, None, 0, 10)[1] == 0
    # the live one, and its event, are never touched
    assert store.deliveries(retrying, "pending", 0, 10)[1] == 1
    assert _rows(store, "events") == 1
    (claim,) = store.claim_due(T0 + 9e9, 10, {}, 10, T0 + 9e9 + 60)
    assert len(claim.events) == 1  # its body still has its event


def test_purge_is_bounded_per_call_and_the_loop_empties_the_backlog(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://a.example"))
    _finish(store, mid, "delivered", T0, count=7)
    first = store.purge(T0 + 3600, T0, 3)
    assert first["deliveries"] == 3 and first["events"] == 3
    assert store.deliveries(mid, None, 0, 10)[1] == 4
    config = RetentionConfig(delivered=3600, dead=7200, batch=3, pause=0)
    assert purge_once(store, config, T0 + 7200)["deliveries"] == 4
    assert _rows(store, "events") == 0 and _rows(store, "attempts") == 0


def test_purge_loop_runs_periodically_and_counts_in_metrics(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://a.example"))
    _finish(store, mid, "delivered", T0, count=2)
    clock, metrics = ManualClock(T0 + 8 * 24 * 3600), Metrics()

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            purge_loop(store, RetentionConfig(interval=3600), stop, clock, metrics)
        )
        while _rows(store, "deliveries"):
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(run())
    text = metrics.render().decode()
    assert 'edgemon_retention_purged_total{table="deliveries"} 2.0' in text
    assert 'edgemon_retention_purged_total{table="events"} 2.0' in text


def test_resend_dead_puts_a_monitors_dead_letters_back_in_batches(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://b.example"))
    other = add_monitor(store, monitor_definition("https://b.example"))
    _finish(store, mid, "dead", T0, count=3)
    _finish(store, other, "dead", T0)
    assert store.resend_dead(mid, T0 + 100, 2) == (2, 1)
    assert store.resend_dead(mid, T0 + 100, 2) == (1, 0)
    assert store.resend_dead(mid, T0 + 100, 2) == (0, 0)
    views, total = store.deliveries(mid, "pending", 0, 10)
    assert total == 3 and all(v.next_at == T0 + 100 and v.reason == "" for v in views)
    assert store.deliveries(other, "dead", 0, 10)[1] == 1  # another monitor's stay
    claims = store.claim_due(T0 + 100, 10, {}, 10, T0 + 200)
    assert {c.held_since for c in claims} == {T0 + 100}  # a new round: the cap starts again
    assert {c.attempts for c in claims} == {0} and {c.tries for c in claims} == {1}
