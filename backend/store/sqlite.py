"""All SQL of the backend: ``SqliteStore`` implements ``backend.store.records.Store`` on
SQLite (WAL).

Each public method is one transaction. Writes use ``BEGIN IMMEDIATE`` so several processes
(ingest, dispatcher, API) can share the file; ``busy_timeout`` makes them wait for each other.
``durable=True`` (ingest) sets ``synchronous=FULL``: a commit is on disk before the MQTT
acknowledgement. Other roles use ``NORMAL`` (WAL-safe against crashes; a lost "delivered" mark
after a power cut only means a re-send with the same ``webhook-id``).

Schema versions live in ``MIGRATIONS`` and ``PRAGMA user_version``; a PostgreSQL store would
keep the same tables and replace ``INSERT OR IGNORE`` with ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.wire import uuid7
from backend.errors import StoreError
from backend.store.records import (
    Attempt,
    AttemptResult,
    ClaimedDelivery,
    DeliveryView,
    EventQuery,
    IncomingEvent,
    MonitorRecord,
    Route,
    StoredEvent,
    VehicleMonitorState,
    VehicleRecord,
    VehicleStatus,
)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE monitors (
        monitor_id TEXT PRIMARY KEY, scope TEXT NOT NULL, owner TEXT NOT NULL,
        definition TEXT NOT NULL, status TEXT NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, deleted_at REAL);
    CREATE INDEX monitors_owner ON monitors (scope, owner, created_at);
    CREATE TABLE vehicle_states (
        monitor_id TEXT NOT NULL, vin TEXT NOT NULL, state TEXT NOT NULL, reasons TEXT NOT NULL,
        hash TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (monitor_id, vin));
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY, vin TEXT NOT NULL, fleet_id TEXT, monitor_id TEXT NOT NULL,
        event_date REAL NOT NULL, received_at REAL NOT NULL, webhook_json TEXT NOT NULL,
        skip_reason TEXT);
    CREATE TABLE deliveries (
        delivery_id TEXT PRIMARY KEY, monitor_id TEXT NOT NULL, callback_name TEXT NOT NULL,
        url TEXT NOT NULL, endpoint TEXT NOT NULL, headers TEXT NOT NULL,
        body_attributes TEXT NOT NULL, batch_key TEXT NOT NULL, batch_size INTEGER NOT NULL,
        state TEXT NOT NULL, event_count INTEGER NOT NULL, first_trigger REAL NOT NULL,
        received_at REAL NOT NULL, next_at REAL NOT NULL, lease_until REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0, tries INTEGER NOT NULL DEFAULT 0,
        policy TEXT NOT NULL, retry_number INTEGER NOT NULL, retry_delay REAL NOT NULL,
        created_at REAL NOT NULL, delivered_at REAL, reason TEXT NOT NULL DEFAULT '');
    CREATE INDEX deliveries_due ON deliveries (state, next_at);
    CREATE INDEX deliveries_monitor ON deliveries (monitor_id, state, attempts);
    CREATE TABLE delivery_events (
        delivery_id TEXT NOT NULL, position INTEGER NOT NULL, event_id TEXT NOT NULL,
        PRIMARY KEY (delivery_id, position));
    CREATE TABLE attempts (
        delivery_id TEXT NOT NULL, number INTEGER NOT NULL, started_at REAL NOT NULL,
        duration REAL NOT NULL, outcome TEXT NOT NULL, status_code INTEGER, error TEXT NOT NULL,
        PRIMARY KEY (delivery_id, number));
    """,
    # 2: the retry cap counts from the backend's receipt, not from the vehicle's eventDate
    # (issue 11). Live deliveries whose origin was an older eventDate restart from their receipt.
    """
    ALTER TABLE deliveries RENAME COLUMN first_trigger TO held_since;
    UPDATE deliveries SET held_since = max(held_since, received_at)
        WHERE state IN ('open', 'pending');
    """,
    # 3: tenancy. Which fleet a vehicle belongs to is the backend's record, not the event's
    # claim; a delivery remembers that fleet, whose secret signs it.
    """
    CREATE TABLE vehicles (
        vin TEXT PRIMARY KEY, fleet_id TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE INDEX vehicles_fleet ON vehicles (fleet_id, vin);
    ALTER TABLE deliveries ADD COLUMN fleet_id TEXT NOT NULL DEFAULT '';
    """,
    # 4: one counter that every change to monitors or vehicles bumps (triggers, so every writer
    # and every process is covered): ingest caches what routing reads and checks only this row.
    """
    CREATE TABLE routing_version (n INTEGER NOT NULL);
    INSERT INTO routing_version VALUES (0);
    CREATE TRIGGER monitors_inserted AFTER INSERT ON monitors
        BEGIN UPDATE routing_version SET n = n + 1; END;
    CREATE TRIGGER monitors_updated AFTER UPDATE ON monitors
        BEGIN UPDATE routing_version SET n = n + 1; END;
    CREATE TRIGGER monitors_deleted AFTER DELETE ON monitors
        BEGIN UPDATE routing_version SET n = n + 1; END;
    CREATE TRIGGER vehicles_inserted AFTER INSERT ON vehicles
        BEGIN UPDATE routing_version SET n = n + 1; END;
    CREATE TRIGGER vehicles_updated AFTER UPDATE ON vehicles
        BEGIN UPDATE routing_version SET n = n + 1; END;
    CREATE TRIGGER vehicles_deleted AFTER DELETE ON vehicles
        BEGIN UPDATE routing_version SET n = n + 1; END;
    """,
    # 5: retention (issue 15). The purge finds final deliveries by age, and the events no
    # delivery refers to any more, through these indexes instead of scanning the tables.
    """
    CREATE INDEX deliveries_final ON deliveries (state, delivered_at, held_since);
    CREATE INDEX delivery_events_event ON delivery_events (event_id);
    CREATE INDEX events_received ON events (received_at);
    """,
    # 6: reading what happened (issue 18): events by vehicle or monitor and time, newest first;
    # each vehicle's last retained status message.
    """
    CREATE INDEX events_vin ON events (vin, event_date);
    CREATE INDEX events_monitor ON events (monitor_id, event_date);
    CREATE TABLE vehicle_status (
        vin TEXT PRIMARY KEY, online INTEGER NOT NULL, at TEXT NOT NULL, version TEXT NOT NULL,
        outbox_depth INTEGER NOT NULL, clock TEXT NOT NULL, received_at REAL NOT NULL);
    """,
)

_LIVE = "('open', 'pending')"
_DELIVERY_COLUMNS = (
    "delivery_id, monitor_id, callback_name, url, endpoint, headers, body_attributes, "
    "attempts, tries, held_since, received_at, policy, retry_number, retry_delay, fleet_id"
)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script, split where SQLite says a statement ends (a
    trigger's body holds semicolons of its own)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.replace(";", "").strip():
                yield pending
            pending = ""


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


def _create_private(path: Path) -> None:
    """Create the store file owner-only (0600) before SQLite opens it: it holds webhook targets
    and attributes. SQLite gives its -wal and -shm files the database file's mode."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


class SqliteStore:
    """The SQLite store. One connection, guarded by a lock (callers may be threads)."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._migrate()

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- monitors ------------------------------------------------------------------------------

    def create_monitor(self, record: MonitorRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO monitors (monitor_id, scope, owner, definition, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.monitor_id,
                    record.scope,
                    record.owner,
                    json.dumps(record.definition),
                    record.status,
                    record.created_at,
                    record.updated_at,
                ),
            )

    @staticmethod
    def _monitor(row: Sequence[Any]) -> MonitorRecord:
        return MonitorRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])

    _MONITOR = "SELECT monitor_id, scope, owner, definition, status, created_at, updated_at"

    def get_monitor(self, monitor_id: str) -> MonitorRecord | None:
        rows = self._read(
            f"{self._MONITOR} FROM monitors WHERE monitor_id = ? AND deleted_at IS NULL",
            (monitor_id,),
        )
        return self._monitor(rows[0]) if rows else None

    def routing_version(self) -> int:
        """A number that changes whenever a monitor or a vehicle changes (any process)."""
        return int(self._read("SELECT n FROM routing_version")[0][0])

    def live_monitors(self) -> list[MonitorRecord]:
        rows = self._read(f"{self._MONITOR} FROM monitors WHERE deleted_at IS NULL")
        return [self._monitor(r) for r in rows]

    def list_monitors(
        self, scope: str, owner: str, offset: int, limit: int
    ) -> tuple[list[MonitorRecord], int]:
        where = "FROM monitors WHERE scope = ? AND owner = ? AND deleted_at IS NULL"
        total = self._read(f"SELECT count(*) {where}", (scope, owner))[0][0]
        rows = self._read(
            f"{self._MONITOR} {where} ORDER BY created_at, rowid LIMIT ? OFFSET ?",
            (scope, owner, limit, offset),
        )
        return [self._monitor(r) for r in rows], int(total)

    def replace_monitor(self, monitor_id: str, definition: dict[str, Any], now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET definition = ?, updated_at = ? WHERE monitor_id = ?",
                (json.dumps(definition), now, monitor_id),
            )

    def set_monitor_status(self, monitor_id: str, status: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET status = ?, updated_at = ? WHERE monitor_id = ?",
                (status, now, monitor_id),
            )

    def delete_monitor(self, monitor_id: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET deleted_at = ?, updated_at = ? WHERE monitor_id = ?",
                (now, now, monitor_id),
            )
            db.execute(
                f"UPDATE deliveries SET state = 'dead', reason = 'monitor deleted'"  # noqa: S608
                f" WHERE monitor_id = ? AND state IN {_LIVE}",
                (monitor_id,),
            )

    def set_vehicle_state(self, state: VehicleMonitorState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO vehicle_states VALUES (?, ?, ?, ?, ?, ?)",
                (
                    state.monitor_id,
                    state.vin,
                    state.state,
                    json.dumps(state.reasons),
                    state.definition_hash,
                    state.at,
                ),
            )

    def clear_vehicle_state(self, monitor_id: str, vin: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM vehicle_states WHERE monitor_id = ? AND vin = ?", (monitor_id, vin)
            )

    def vehicle_states(self, monitor_id: str) -> list[VehicleMonitorState]:
        rows = self._read(
            "SELECT vin, monitor_id, state, reasons, hash, at FROM vehicle_states"
            " WHERE monitor_id = ? ORDER BY vin",
            (monitor_id,),
        )
        return [VehicleMonitorState(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def monitor_owner(self, monitor_id: str) -> tuple[str, str] | None:
        """(scope, owner) of a monitor, deleted ones included (their deliveries stay readable)."""
        rows = self._read("SELECT scope, owner FROM monitors WHERE monitor_id = ?", (monitor_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    # -- vehicles ------------------------------------------------------------------------------

    def put_vehicle(self, vin: str, fleet_id: str, now: float) -> bool:
        """Provision ``vin`` in ``fleet_id`` (moving it if it was elsewhere); True if new."""
        with self._tx() as db:
            known = db.execute("SELECT 1 FROM vehicles WHERE vin = ?", (vin,)).fetchone()
            db.execute(
                "INSERT INTO vehicles VALUES (?, ?, ?)"
                " ON CONFLICT (vin) DO UPDATE SET fleet_id = excluded.fleet_id",
                (vin, fleet_id, now),
            )
        return known is None

    def vehicle_fleet(self, vin: str) -> str | None:
        vehicle = self.get_vehicle(vin)
        return None if vehicle is None else vehicle.fleet_id

    def get_vehicle(self, vin: str) -> VehicleRecord | None:
        rows = self._read("SELECT vin, fleet_id, created_at FROM vehicles WHERE vin = ?", (vin,))
        return VehicleRecord(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def list_vehicles(
        self, fleet_id: str, offset: int, limit: int
    ) -> tuple[list[VehicleRecord], int]:
        total = self._read("SELECT count(*) FROM vehicles WHERE fleet_id = ?", (fleet_id,))[0][0]
        rows = self._read(
            "SELECT vin, fleet_id, created_at FROM vehicles WHERE fleet_id = ?"
            " ORDER BY vin LIMIT ? OFFSET ?",
            (fleet_id, limit, offset),
        )
        return [VehicleRecord(r[0], r[1], r[2]) for r in rows], int(total)

    def delete_vehicle(self, fleet_id: str, vin: str) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM vehicles WHERE vin = ? AND fleet_id = ?", (vin, fleet_id)
            )
            return cursor.rowcount == 1

    # -- ingest --------------------------------------------------------------------------------

    def commit_events(self, events: Sequence[IncomingEvent], now: float) -> list[bool]:
        """Store new events and their deliveries; False for an event id already stored."""
        fresh: list[bool] = []
        with self._tx() as db:
            for event in events:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.event_id,
                        event.vin,
                        event.fleet_id,
                        event.monitor_id,
                        event.event_date,
                        now,
                        event.webhook_json,
                        event.skip_reason,
                    ),
                )
                fresh.append(cursor.rowcount == 1)
                if cursor.rowcount == 1:
                    for route in event.routes:
                        self._route_event(db, event.event_id, route, now)
        return fresh

    def _route_event(self, db: sqlite3.Connection, event_id: str, route: Route, now: float) -> None:
        row = None
        if route.batch_size > 1:
            row = db.execute(
                "SELECT delivery_id, event_count FROM deliveries"
                " WHERE state = 'open' AND monitor_id = ? AND batch_key = ? LIMIT 1",
                (route.monitor_id, route.batch_key),
            ).fetchone()
        if row is None:
            delivery_id = uuid7(int(now * 1000))
            batching = route.batch_size > 1
            db.execute(
                "INSERT INTO deliveries (delivery_id, monitor_id, callback_name, url, endpoint,"
                " headers, body_attributes, batch_key, batch_size, state, event_count,"
                " held_since, received_at, next_at, policy, retry_number, retry_delay,"
                " created_at, fleet_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery_id,
                    route.monitor_id,
                    route.callback_name,
                    route.url,
                    route.endpoint,
                    json.dumps(route.headers),
                    json.dumps(route.body_attributes),
                    route.batch_key,
                    route.batch_size,
                    "open" if batching else "pending",
                    now,
                    now,
                    now + route.batch_window if batching else now,
                    route.policy,
                    route.retry_number,
                    route.retry_delay,
                    now,
                    route.fleet_id,
                ),
            )
            db.execute("INSERT INTO delivery_events VALUES (?, 0, ?)", (delivery_id, event_id))
            return
        delivery_id, count = row
        db.execute("INSERT INTO delivery_events VALUES (?, ?, ?)", (delivery_id, count, event_id))
        full = count + 1 >= route.batch_size
        db.execute(
            "UPDATE deliveries SET event_count = event_count + 1,"
            " state = CASE WHEN ? THEN 'pending' ELSE state END,"
            " next_at = CASE WHEN ? THEN ? ELSE next_at END WHERE delivery_id = ?",
            (full, full, now, delivery_id),
        )

    # -- dispatcher ----------------------------------------------------------------------------

    def claim_due(
        self,
        now: float,
        limit: int,
        in_flight: Mapping[str, int],
        per_endpoint: int,
        lease_until: float,
    ) -> list[ClaimedDelivery]:
        """Lease due deliveries, at most ``per_endpoint`` in flight per endpoint.

        ``in_flight`` is per endpoint the part of ``per_endpoint`` already taken; it may be
        negative for an endpoint allowed more than ``per_endpoint`` (its own limit, issue 15).

        While a monitor is in retry, only its retrying deliveries are due (reference §4).
        """
        room = {e: per_endpoint - n for e, n in in_flight.items()}
        busy = [e for e, free in room.items() if free <= 0]
        marks = ",".join("?" * len(busy))
        with self._tx() as db:
            candidates = db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608 (constants only)
                f" WHERE d.state IN {_LIVE} AND d.next_at <= ? AND d.lease_until <= ?"
                f" AND d.endpoint NOT IN ({marks})"
                " AND (d.attempts > 0 OR NOT EXISTS (SELECT 1 FROM deliveries r"
                "  WHERE r.monitor_id = d.monitor_id AND r.state = 'pending' AND r.attempts > 0))"
                " ORDER BY d.next_at LIMIT ?",
                (now, now, *busy, limit),
            ).fetchall()
            rows = []
            for row in candidates:
                free = room.setdefault(row[4], per_endpoint)
                if free > 0:
                    room[row[4]] = free - 1
                    rows.append(row)
            ids = [row[0] for row in rows]
            db.executemany(
                "UPDATE deliveries SET state = 'pending', lease_until = ? WHERE delivery_id = ?",
                [(lease_until, i) for i in ids],
            )
            events = self._events_of(db, ids)
        return [
            ClaimedDelivery(
                delivery_id=row[0],
                monitor_id=row[1],
                callback_name=row[2],
                url=row[3],
                endpoint=row[4],
                headers=_pairs(row[5]),
                body_attributes=_pairs(row[6]),
                events=tuple(events.get(row[0], ())),
                attempts=row[7],
                tries=row[8],
                held_since=row[9],
                received_at=row[10],
                policy=row[11],
                retry_number=row[12],
                retry_delay=row[13],
                fleet_id=row[14],
            )
            for row in rows
        ]

    @staticmethod
    def _events_of(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[str]]:
        """The MonitorEvent JSON of each delivery, in arrival order (one query per 500)."""
        found: dict[str, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                "SELECT de.delivery_id, e.webhook_json FROM delivery_events de"  # noqa: S608
                " JOIN events e ON e.event_id = de.event_id"
                f" WHERE de.delivery_id IN ({marks}) ORDER BY de.delivery_id, de.position",
                chunk,
            ).fetchall()
            for delivery_id, text in rows:
                found.setdefault(delivery_id, []).append(text)
        return found

    def record_results(self, results: Sequence[AttemptResult], now: float) -> None:
        with self._tx() as db:
            released: set[str] = set()
            for result in results:
                self._record(db, result, now)
                if result.state == "delivered" and result.monitor_id not in released:
                    # Leaving retry: everything stored for the monitor goes out now (§4).
                    released.add(result.monitor_id)
                    db.execute(
                        "UPDATE deliveries SET next_at = min(next_at, ?)"
                        " WHERE monitor_id = ? AND state = 'pending' AND attempts > 0",
                        (now, result.monitor_id),
                    )

    @staticmethod
    def _record(db: sqlite3.Connection, result: AttemptResult, now: float) -> None:
        a = result.attempt
        if a is None:
            db.execute(
                "UPDATE deliveries SET lease_until = 0 WHERE delivery_id = ?",
                (result.delivery_id,),
            )
            return
        db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (a.delivery_id, a.number, a.started_at, a.duration, a.outcome, a.status_code, a.error),
        )
        db.execute(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, tries = ?, lease_until = 0,"
            " next_at = coalesce(?, next_at), reason = ?,"
            " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END"
            " WHERE delivery_id = ?",
            (
                result.state,
                a.number,
                result.next_at,
                result.reason,
                result.state,
                now,
                a.delivery_id,
            ),
        )
        if result.gone:
            db.execute(
                f"UPDATE deliveries SET state = 'dead', reason = ?"  # noqa: S608
                f" WHERE monitor_id = ? AND state IN {_LIVE}",
                (result.reason, result.monitor_id),
            )
            db.execute(
                "UPDATE monitors SET status = 'Failed', updated_at = ? WHERE monitor_id = ?",
                (now, result.monitor_id),
            )

    def expire(self, now: float, max_age: float) -> int:
        """Drop held notifications older than ``max_age`` to the dead-letter list."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'dead', reason = 'expired after the retry window'"
                " WHERE state = 'pending' AND attempts = 0 AND held_since + ? < ?"
                " AND lease_until <= ? AND monitor_id IN (SELECT monitor_id FROM deliveries"
                "  WHERE state = 'pending' AND attempts > 0)",
                (max_age, now, now),
            )
            return int(cursor.rowcount)

    def depth(self) -> dict[str, int]:
        counts = {"open": 0, "pending": 0, "retrying": 0, "dead": 0}
        rows = self._read(
            "SELECT state, attempts > 0, count(*) FROM deliveries"
            " WHERE state IN ('open', 'pending', 'dead') GROUP BY 1, 2"
        )
        for state, retrying, count in rows:
            key = "retrying" if state == "pending" and retrying else state
            counts[key] += int(count)
        return counts

    # -- history -------------------------------------------------------------------------------

    _VIEW = (
        "SELECT delivery_id, monitor_id, state, url, attempts, created_at, next_at,"
        " delivered_at, reason FROM deliveries"
    )

    def _view(self, row: Sequence[Any]) -> DeliveryView:
        events = self._read(
            "SELECT event_id FROM delivery_events WHERE delivery_id = ? ORDER BY position",
            (row[0],),
        )
        history = self._read(
            "SELECT delivery_id, number, started_at, duration, outcome, status_code, error"
            " FROM attempts WHERE delivery_id = ? ORDER BY number",
            (row[0],),
        )
        live = row[2] in ("open", "pending")
        return DeliveryView(
            delivery_id=row[0],
            monitor_id=row[1],
            state=row[2],
            url=row[3],
            event_ids=[e[0] for e in events],
            attempts=row[4],
            created_at=row[5],
            next_at=row[6] if live else None,
            delivered_at=row[7],
            reason=row[8],
            history=[Attempt(*h) for h in history],
        )

    def deliveries(
        self, monitor_id: str, state: str | None, offset: int, limit: int
    ) -> tuple[list[DeliveryView], int]:
        where, params = "WHERE monitor_id = ?", [monitor_id]
        if state is not None:
            where += " AND state = ?"
            params.append(state)
        count_sql = f"SELECT count(*) FROM deliveries {where}"  # noqa: S608 (constants only)
        total = self._read(count_sql, params)[0][0]
        rows = self._read(
            f"{self._VIEW} {where} ORDER BY created_at, rowid LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [self._view(r) for r in rows], int(total)

    def get_delivery(self, delivery_id: str) -> DeliveryView | None:
        rows = self._read(f"{self._VIEW} WHERE delivery_id = ?", (delivery_id,))
        return self._view(rows[0]) if rows else None

    def resend(self, delivery_id: str, now: float, max_age: float) -> bool:
        """Put a dead-lettered delivery back in line as a new round; False if it is not dead."""
        del max_age  # the new round's age cap starts now (held_since = now)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, held_since = ?,"
                " next_at = ?, lease_until = 0, reason = '' WHERE delivery_id = ?"
                " AND state = 'dead'",
                (now, now, delivery_id),
            )
            return cursor.rowcount == 1

    # -- delivery at scale (issue 15): circuits, retention, dead letters in bulk ---------------

    def expire_endpoints(self, now: float, max_age: float, endpoints: Sequence[str]) -> int:
        """Dead-letter the unleased deliveries of ``endpoints`` (their circuits are open) held
        longer than ``max_age`` since ``held_since``: no attempt is made after the cap."""
        if not endpoints:
            return 0
        marks = ",".join("?" * len(endpoints))
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'dead',"  # noqa: S608 (constants only)
                " reason = 'expired after the retry window: the endpoint did not answer'"
                f" WHERE state = 'pending' AND endpoint IN ({marks})"
                " AND held_since + ? < ? AND lease_until <= ?",
                (*endpoints, max_age, now, now),
            )
            return int(cursor.rowcount)

    def purge(self, delivered_before: float, dead_before: float, limit: int) -> dict[str, int]:
        """Delete up to ``limit`` final deliveries with their attempts, and the events no
        delivery refers to any more, in one short transaction. Delivered ones go when
        ``delivered_at < delivered_before``, dead letters when ``held_since < dead_before``
        (the receipt, or the last re-send). Returns the rows deleted per table; call again
        while ``deliveries`` or ``events`` equals ``limit``."""
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT delivery_id FROM deliveries WHERE state = 'delivered'"
                    " AND delivered_at < ? LIMIT ?",
                    (delivered_before, limit),
                ).fetchall()
            ]
            ids += [
                r[0]
                for r in db.execute(
                    "SELECT delivery_id FROM deliveries WHERE state = 'dead'"
                    " AND delivered_at IS NULL AND held_since < ? LIMIT ?",
                    (dead_before, limit - len(ids)),
                ).fetchall()
            ]
            counts = self._delete_deliveries(db, ids)
            counts["events"] = self._delete_orphan_events(db, delivered_before, limit)
        return counts

    @staticmethod
    def _delete_deliveries(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        counts = {"deliveries": 0, "attempts": 0, "delivery_events": 0}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for table in ("attempts", "delivery_events", "deliveries"):
                cursor = db.execute(
                    f"DELETE FROM {table} WHERE delivery_id IN ({marks})",  # noqa: S608
                    chunk,
                )
                counts[table] += int(cursor.rowcount)
        return counts

    @staticmethod
    def _delete_orphan_events(db: sqlite3.Connection, before: float, limit: int) -> int:
        """Events received before ``before`` that no delivery refers to (their deliveries were
        purged, or they never had one: skipped, or no monitor wanted them)."""
        cursor = db.execute(
            "DELETE FROM events WHERE rowid IN (SELECT e.rowid FROM events e"
            " WHERE e.received_at < ? AND NOT EXISTS"
            " (SELECT 1 FROM delivery_events de WHERE de.event_id = e.event_id) LIMIT ?)",
            (before, limit),
        )
        return int(cursor.rowcount)

    def resend_dead(self, monitor_id: str, now: float, limit: int) -> tuple[int, int]:
        """Put up to ``limit`` of a monitor's dead letters (oldest first) back in line, each as
        a new round (like ``resend``). Returns (re-sent, dead letters still left)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, held_since = ?,"
                " next_at = ?, lease_until = 0, reason = '' WHERE delivery_id IN"
                " (SELECT delivery_id FROM deliveries WHERE monitor_id = ? AND state = 'dead'"
                "  ORDER BY created_at, rowid LIMIT ?)",
                (now, now, monitor_id, limit),
            )
            left = db.execute(
                "SELECT count(*) FROM deliveries WHERE monitor_id = ? AND state = 'dead'",
                (monitor_id,),
            ).fetchone()[0]
        return int(cursor.rowcount), int(left)

    # -- reading what happened (issue 18) -----------------------------------------------------

    def events_page(
        self, query: EventQuery, offset: int, limit: int
    ) -> tuple[list[StoredEvent], int]:
        """Stored events matching ``query``, newest ``event_date`` first, and how many match."""
        clauses: list[str] = ["1 = 1"]
        params: list[str | float] = []
        for column, value in (("vin", query.vin), ("monitor_id", query.monitor_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("event_date >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("event_date <= ?")
            params.append(query.until)
        if query.fleets is not None:  # no fleet: nothing (an empty IN () is not portable SQL)
            marks = ",".join("?" * len(query.fleets))
            clauses.append(f"fleet_id IN ({marks})" if query.fleets else "1 = 0")
            params += list(query.fleets)
        where = " AND ".join(clauses)  # fixed fragments; the values are parameters
        total = self._read(f"SELECT count(*) FROM events WHERE {where}", params)[0][0]  # noqa: S608
        columns = "event_id, vin, fleet_id, monitor_id, event_date, received_at, webhook_json"
        rows = self._read(
            f"SELECT {columns}, skip_reason FROM events WHERE {where}"  # noqa: S608
            " ORDER BY event_date DESC, rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [StoredEvent(*row) for row in rows], int(total)

    def set_vehicle_status(self, status: VehicleStatus) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO vehicle_status VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    status.vin,
                    int(status.online),
                    status.at,
                    status.version,
                    status.outbox_depth,
                    status.clock,
                    status.received_at,
                ),
            )

    def vehicle_status(self, vin: str) -> VehicleStatus | None:
        rows = self._read(
            "SELECT vin, online, at, version, outbox_depth, clock, received_at"
            " FROM vehicle_status WHERE vin = ?",
            (vin,),
        )
        if not rows:
            return None
        vin, online, at, version, depth, clock, received_at = rows[0]
        return VehicleStatus(vin, bool(online), at, version, depth, clock, received_at)
