"""``PostgresStore``: the ``backend.store.records.Store`` interface on PostgreSQL (psycopg 3 and
its connection pool), for several backend processes on several machines sharing one store.

The tables are SQLite's (``backend.store.sqlite``), with ``double precision`` times, ``seq``
columns where SQLite orders by ``rowid``, and ``ON CONFLICT DO NOTHING`` for ``INSERT OR
IGNORE``. Each public method is one transaction at READ COMMITTED, on a connection from the
pool. ``durable=True`` (ingest) commits synchronously: an event is on the server's disk before
the MQTT acknowledgement. Other roles commit with ``synchronous_commit=off``, as SQLite's
``synchronous=NORMAL``: a server crash may lose the last fraction of a second of claims and
results (never the database's consistency), which only means a re-send with the same
``webhook-id``.

Work shared by many dispatchers: ``claim_due`` selects due deliveries ``FOR UPDATE SKIP
LOCKED`` (two workers never wait for each other nor take the same row) and sets a lease
(``lease_until``); a worker that dies holding leases loses them when they expire, and another
worker claims the same rows again: the same ``delivery_id`` (the ``webhook-id``) and the same
events in the same positions (the same body). Results come back in groups (``record_results``,
one transaction per group).

Schema versions live in ``MIGRATIONS`` and the ``schema_version`` table; PostgreSQL's 1 is
SQLite's 1 to 7 (the store arrived at that schema). Migrations run under an advisory lock, so
workers starting together migrate once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

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
    order_key,
)

MIGRATIONS: tuple[str, ...] = (
    # 1: SQLite's 1-7: monitors, vehicle reports, events, deliveries (with their vehicle order
    # key), the events of each delivery, attempts, vehicles, the routing version that every
    # change to a monitor or a vehicle bumps (ingest's cache checks only that row), the
    # retention purge's indexes, the events' read indexes and each vehicle's last status.
    """
    CREATE TABLE monitors (
        monitor_id text PRIMARY KEY, scope text NOT NULL, owner text NOT NULL,
        definition text NOT NULL, status text NOT NULL,
        created_at double precision NOT NULL, updated_at double precision NOT NULL,
        deleted_at double precision, seq bigserial NOT NULL);
    CREATE INDEX monitors_owner ON monitors (scope, owner, created_at, seq);
    CREATE TABLE vehicle_states (
        monitor_id text NOT NULL, vin text NOT NULL, state text NOT NULL, reasons text NOT NULL,
        hash text NOT NULL, at text NOT NULL, PRIMARY KEY (monitor_id, vin));
    CREATE TABLE events (
        event_id text PRIMARY KEY, vin text NOT NULL, fleet_id text, monitor_id text NOT NULL,
        event_date double precision NOT NULL, received_at double precision NOT NULL,
        webhook_json text NOT NULL, skip_reason text, seq bigserial NOT NULL);
    CREATE INDEX events_received ON events (received_at);
    CREATE INDEX events_vin ON events (vin, event_date);
    CREATE INDEX events_monitor ON events (monitor_id, event_date);
    CREATE TABLE vehicle_status (
        vin text PRIMARY KEY, online boolean NOT NULL, at text NOT NULL, version text NOT NULL,
        outbox_depth integer NOT NULL, clock text NOT NULL,
        received_at double precision NOT NULL);
    CREATE TABLE deliveries (
        delivery_id text PRIMARY KEY, monitor_id text NOT NULL, callback_name text NOT NULL,
        url text NOT NULL, endpoint text NOT NULL, headers text NOT NULL,
        body_attributes text NOT NULL, batch_key text NOT NULL, batch_size integer NOT NULL,
        state text NOT NULL, event_count integer NOT NULL,
        held_since double precision NOT NULL, received_at double precision NOT NULL,
        next_at double precision NOT NULL, lease_until double precision NOT NULL DEFAULT 0,
        attempts integer NOT NULL DEFAULT 0, tries integer NOT NULL DEFAULT 0,
        policy text NOT NULL, retry_number integer NOT NULL, retry_delay double precision NOT NULL,
        created_at double precision NOT NULL, delivered_at double precision,
        reason text NOT NULL DEFAULT '', fleet_id text NOT NULL DEFAULT '',
        order_key text NOT NULL DEFAULT '', seq bigserial NOT NULL);
    CREATE INDEX deliveries_due ON deliveries (next_at, seq) WHERE state IN ('open', 'pending');
    CREATE INDEX deliveries_retrying ON deliveries (monitor_id)
        WHERE state = 'pending' AND attempts > 0;
    CREATE INDEX deliveries_monitor ON deliveries (monitor_id, state, attempts);
    CREATE INDEX deliveries_order ON deliveries (monitor_id, order_key, seq)
        WHERE state IN ('open', 'pending');
    CREATE INDEX deliveries_listed ON deliveries (monitor_id, created_at, seq);
    CREATE INDEX deliveries_final ON deliveries (state, delivered_at, held_since);
    CREATE TABLE delivery_events (
        delivery_id text NOT NULL, position integer NOT NULL, event_id text NOT NULL,
        PRIMARY KEY (delivery_id, position));
    CREATE INDEX delivery_events_event ON delivery_events (event_id);
    CREATE TABLE attempts (
        delivery_id text NOT NULL, number integer NOT NULL,
        started_at double precision NOT NULL, duration double precision NOT NULL,
        outcome text NOT NULL, status_code integer, error text NOT NULL,
        PRIMARY KEY (delivery_id, number));
    CREATE TABLE vehicles (
        vin text PRIMARY KEY, fleet_id text NOT NULL, created_at double precision NOT NULL);
    CREATE INDEX vehicles_fleet ON vehicles (fleet_id, vin);
    CREATE TABLE routing_version (n bigint NOT NULL);
    INSERT INTO routing_version VALUES (0);
    CREATE FUNCTION bump_routing_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE routing_version SET n = n + 1; RETURN NULL; END $$;
    CREATE TRIGGER monitors_changed AFTER INSERT OR UPDATE OR DELETE ON monitors
        FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
    CREATE TRIGGER vehicles_changed AFTER INSERT OR UPDATE OR DELETE ON vehicles
        FOR EACH STATEMENT EXECUTE FUNCTION bump_routing_version();
    """,
)

_INSERT_DELIVERY = (
    "INSERT INTO deliveries (delivery_id, monitor_id, callback_name, url, endpoint, headers,"
    " body_attributes, batch_key, batch_size, state, event_count, held_since, received_at,"
    " next_at, policy, retry_number, retry_delay, created_at, fleet_id, order_key)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_MIGRATION_LOCK = 0x65646D6F  # "edmo": one advisory lock id for every edgemon migration
_LIVE = "('open', 'pending')"
_DELIVERY_COLUMNS = (
    "delivery_id, monitor_id, callback_name, url, endpoint, headers, body_attributes, "
    "attempts, tries, held_since, received_at, policy, retry_number, retry_delay, fleet_id"
)
_MONITOR = "SELECT monitor_id, scope, owner, definition, status, created_at, updated_at"
_VIEW = (
    "SELECT delivery_id, monitor_id, state, url, attempts, created_at, next_at,"
    " delivered_at, reason FROM deliveries"
)


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


def _monitor(row: Sequence[Any]) -> MonitorRecord:
    return MonitorRecord(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])


def _delivery_row(delivery_id: str, vin: str, route: Route, now: float) -> tuple[Any, ...]:
    """The values of ``_INSERT_DELIVERY`` for a new delivery of ``route``."""
    batching = route.batch_size > 1
    return (
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
        order_key(vin, route),
    )


class PostgresStore:
    """The PostgreSQL store: a pool of ``pool_size`` connections (callers may be threads)."""

    def __init__(
        self,
        url: str,
        *,
        durable: bool = True,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url  # holds the password: never logged (``_where``)
        self._closed = threading.Event()
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            timeout=connect_timeout,
            kwargs={
                "autocommit": True,
                "connect_timeout": int(connect_timeout),
                # as SQLite's synchronous=NORMAL for the roles other than ingest
                "options": "" if durable else "-c synchronous_commit=off",
            },
            # No check on every checkout (it doubled a short transaction's time, 136 against
            # 71 us): a connection that broke fails its transaction (StoreError, retried by
            # the caller) and the pool replaces it.
            name="edgemon",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            self._migrate()
        except (psycopg.Error, psycopg_pool.PoolTimeout, StoreError) as exc:
            self._pool.close()  # its threads too: a failed start leaves nothing running
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the store {self._where()}: {exc}") from exc

    def _where(self) -> str:
        """The URL without its password (for errors and logs)."""
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            return "postgresql (bad URL)"
        host, port, name = (info.get(k, "") for k in ("host", "port", "dbname"))
        return f"postgresql://{host}:{port}/{name}"

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction. A broken connection or server is ``StoreError`` (retried by the
        caller); a value PostgreSQL refuses (``DataError``: a NUL in a text) is ``ValueError``,
        so ingest drops that event alone."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.DataError as exc:
            raise ValueError(f"store refused a value: {exc}") from exc
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreError(f"store {self._where()}: {exc}") from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._tx() as conn:
            return conn.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (n integer NOT NULL)")
            row = db.execute("SELECT n FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (0)")
            version = 0 if row is None else int(row[0])
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.execute(script)  # constant text, no parameters
                db.execute("UPDATE schema_version SET n = %s", (number,))

    def schema_version(self) -> int:
        return int(self._read("SELECT n FROM schema_version")[0][0])

    def ping(self) -> None:
        """A round trip to the server (``/healthz``); ``StoreError`` if it is away."""
        self._read("SELECT 1")

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    # -- monitors ------------------------------------------------------------------------------

    def create_monitor(self, record: MonitorRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO monitors (monitor_id, scope, owner, definition, status, created_at,"
                " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
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

    def get_monitor(self, monitor_id: str) -> MonitorRecord | None:
        rows = self._read(
            f"{_MONITOR} FROM monitors WHERE monitor_id = %s AND deleted_at IS NULL",
            (monitor_id,),
        )
        return _monitor(rows[0]) if rows else None

    def routing_version(self) -> int:
        """A number that changes whenever a monitor or a vehicle changes (any process)."""
        return int(self._read("SELECT n FROM routing_version")[0][0])

    def live_monitors(self) -> list[MonitorRecord]:
        rows = self._read(f"{_MONITOR} FROM monitors WHERE deleted_at IS NULL")
        return [_monitor(r) for r in rows]

    def list_monitors(
        self, scope: str, owner: str, offset: int, limit: int
    ) -> tuple[list[MonitorRecord], int]:
        where = "FROM monitors WHERE scope = %s AND owner = %s AND deleted_at IS NULL"
        with self._tx() as db:
            total = db.execute(f"SELECT count(*) {where}", (scope, owner)).fetchone()
            rows = db.execute(
                f"{_MONITOR} {where} ORDER BY created_at, seq LIMIT %s OFFSET %s",
                (scope, owner, limit, offset),
            ).fetchall()
        return [_monitor(r) for r in rows], int(total[0] if total else 0)

    def replace_monitor(self, monitor_id: str, definition: dict[str, Any], now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET definition = %s, updated_at = %s WHERE monitor_id = %s",
                (json.dumps(definition), now, monitor_id),
            )

    def set_monitor_status(self, monitor_id: str, status: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET status = %s, updated_at = %s WHERE monitor_id = %s",
                (status, now, monitor_id),
            )

    def delete_monitor(self, monitor_id: str, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE monitors SET deleted_at = %s, updated_at = %s WHERE monitor_id = %s",
                (now, now, monitor_id),
            )
            db.execute(
                "UPDATE deliveries SET state = 'dead', reason = 'monitor deleted'"  # noqa: S608
                f" WHERE monitor_id = %s AND state IN {_LIVE}",
                (monitor_id,),
            )

    def set_vehicle_state(self, state: VehicleMonitorState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO vehicle_states VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (monitor_id, vin) DO UPDATE SET state = excluded.state,"
                " reasons = excluded.reasons, hash = excluded.hash, at = excluded.at",
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
                "DELETE FROM vehicle_states WHERE monitor_id = %s AND vin = %s", (monitor_id, vin)
            )

    def vehicle_states(self, monitor_id: str) -> list[VehicleMonitorState]:
        rows = self._read(
            "SELECT vin, monitor_id, state, reasons, hash, at FROM vehicle_states"
            " WHERE monitor_id = %s ORDER BY vin",
            (monitor_id,),
        )
        return [VehicleMonitorState(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def monitor_owner(self, monitor_id: str) -> tuple[str, str] | None:
        """(scope, owner) of a monitor, deleted ones included (their deliveries stay readable)."""
        rows = self._read("SELECT scope, owner FROM monitors WHERE monitor_id = %s", (monitor_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    # -- vehicles ------------------------------------------------------------------------------

    def put_vehicle(self, vin: str, fleet_id: str, now: float) -> bool:
        """Provision ``vin`` in ``fleet_id`` (moving it if it was elsewhere); True if new."""
        with self._tx() as db:
            row = db.execute(
                "INSERT INTO vehicles VALUES (%s, %s, %s) ON CONFLICT (vin) DO UPDATE"
                " SET fleet_id = excluded.fleet_id RETURNING (xmax = 0)",
                (vin, fleet_id, now),
            ).fetchone()
        return bool(row and row[0])

    def vehicle_fleet(self, vin: str) -> str | None:
        vehicle = self.get_vehicle(vin)
        return None if vehicle is None else vehicle.fleet_id

    def get_vehicle(self, vin: str) -> VehicleRecord | None:
        rows = self._read("SELECT vin, fleet_id, created_at FROM vehicles WHERE vin = %s", (vin,))
        return VehicleRecord(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def list_vehicles(
        self, fleet_id: str, offset: int, limit: int
    ) -> tuple[list[VehicleRecord], int]:
        with self._tx() as db:
            total = db.execute(
                "SELECT count(*) FROM vehicles WHERE fleet_id = %s", (fleet_id,)
            ).fetchone()
            rows = db.execute(
                "SELECT vin, fleet_id, created_at FROM vehicles WHERE fleet_id = %s"
                " ORDER BY vin LIMIT %s OFFSET %s",
                (fleet_id, limit, offset),
            ).fetchall()
        return [VehicleRecord(r[0], r[1], r[2]) for r in rows], int(total[0] if total else 0)

    def delete_vehicle(self, fleet_id: str, vin: str) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM vehicles WHERE vin = %s AND fleet_id = %s", (vin, fleet_id)
            )
            return cursor.rowcount == 1

    # -- ingest --------------------------------------------------------------------------------

    def commit_events(self, events: Sequence[IncomingEvent], now: float) -> list[bool]:
        """Store new events and their deliveries; False for an event id already stored (or
        repeated in the group). One statement stores the group's events, one pipeline its
        unbatched deliveries (in arrival order: their ``seq`` is the vehicle's order)."""
        if not events:
            return []
        with self._tx() as db:
            columns = list(zip(*(
                (e.event_id, e.vin, e.fleet_id, e.monitor_id, e.event_date, now,
                 e.webhook_json, e.skip_reason)
                for e in events
            ), strict=True))  # fmt: skip
            stored = {
                row[0]
                for row in db.execute(
                    "INSERT INTO events (event_id, vin, fleet_id, monitor_id, event_date,"
                    " received_at, webhook_json, skip_reason)"
                    " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],"
                    " %s::float8[], %s::float8[], %s::text[], %s::text[])"
                    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    [list(c) for c in columns],
                )
            }
            fresh: list[bool] = []
            deliveries: list[tuple[Any, ...]] = []
            links: list[tuple[str, str]] = []
            for event in events:
                new = event.event_id in stored
                stored.discard(event.event_id)  # a repeat in the same group is not new
                fresh.append(new)
                for route in event.routes if new else ():
                    if route.batch_size > 1:
                        self._route_event(db, event.event_id, event.vin, route, now)
                    else:
                        delivery_id = uuid7(int(now * 1000))
                        deliveries.append(_delivery_row(delivery_id, event.vin, route, now))
                        links.append((delivery_id, event.event_id))
            if deliveries:
                with db.cursor() as cur:
                    cur.executemany(_INSERT_DELIVERY, deliveries)
                    cur.executemany("INSERT INTO delivery_events VALUES (%s, 0, %s)", links)
        return fresh

    @staticmethod
    def _route_event(
        db: psycopg.Connection[Any], event_id: str, vin: str, route: Route, now: float
    ) -> None:
        row = None
        if route.batch_size > 1:
            # FOR UPDATE: two ingest workers adding to one open batch take turns (the second
            # sees the first's count, or no open batch once it filled up).
            row = db.execute(
                "SELECT delivery_id, event_count FROM deliveries"
                " WHERE state = 'open' AND monitor_id = %s AND batch_key = %s LIMIT 1"
                " FOR UPDATE",
                (route.monitor_id, route.batch_key),
            ).fetchone()
        if row is None:
            delivery_id = uuid7(int(now * 1000))
            db.execute(_INSERT_DELIVERY, _delivery_row(delivery_id, vin, route, now))
            db.execute("INSERT INTO delivery_events VALUES (%s, 0, %s)", (delivery_id, event_id))
            return
        delivery_id, count = row
        db.execute(
            "INSERT INTO delivery_events VALUES (%s, %s, %s)", (delivery_id, count, event_id)
        )
        full = count + 1 >= route.batch_size
        db.execute(
            "UPDATE deliveries SET event_count = event_count + 1,"
            " state = CASE WHEN %s THEN 'pending' ELSE state END,"
            " next_at = CASE WHEN %s THEN %s ELSE next_at END WHERE delivery_id = %s",
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
        *,
        in_order: bool = False,
    ) -> list[ClaimedDelivery]:
        """Lease due deliveries ``FOR UPDATE SKIP LOCKED``, at most ``per_endpoint`` in flight
        per endpoint (this worker's count: each worker keeps its own limit).

        While a monitor is in retry, only its retrying deliveries are due (reference §4).
        ``in_order``: a delivery waits while an earlier one of its monitor and vehicle is live
        (leased by any worker, or due, or in retry).
        """
        room = {e: per_endpoint - n for e, n in in_flight.items()}
        busy = [e for e, free in room.items() if free <= 0]
        with self._tx() as db:
            candidates = db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d"  # noqa: S608 (constants only)
                f" WHERE d.state IN {_LIVE} AND d.next_at <= %s AND d.lease_until <= %s"
                " AND d.endpoint <> ALL(%s)"
                " AND (d.attempts > 0 OR d.monitor_id NOT IN (SELECT r.monitor_id FROM deliveries r"
                "  WHERE r.state = 'pending' AND r.attempts > 0))"
                " AND (NOT %s OR NOT EXISTS (SELECT 1 FROM deliveries o"
                "  WHERE o.monitor_id = d.monitor_id AND o.order_key = d.order_key"
                f"  AND o.state IN {_LIVE} AND o.seq < d.seq))"
                " ORDER BY d.next_at, d.seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, now, busy, in_order, limit),
            ).fetchall()
            rows = []
            for row in candidates:
                free = room.setdefault(row[4], per_endpoint)
                if free > 0:
                    room[row[4]] = free - 1
                    rows.append(row)
            ids = [row[0] for row in rows]
            if ids:
                db.execute(
                    "UPDATE deliveries SET state = 'pending', lease_until = %s"
                    " WHERE delivery_id = ANY(%s)",
                    (lease_until, ids),
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
    def _events_of(db: psycopg.Connection[Any], ids: Sequence[str]) -> dict[str, list[str]]:
        """The MonitorEvent JSON of each delivery, in arrival order (one query)."""
        found: dict[str, list[str]] = {}
        if not ids:
            return found
        rows = db.execute(
            "SELECT de.delivery_id, e.webhook_json FROM delivery_events de"
            " JOIN events e ON e.event_id = de.event_id"
            " WHERE de.delivery_id = ANY(%s) ORDER BY de.delivery_id, de.position",
            (list(ids),),
        ).fetchall()
        for delivery_id, text in rows:
            found.setdefault(delivery_id, []).append(text)
        return found

    def record_results(self, results: Sequence[AttemptResult], now: float) -> None:
        """Write a group of results in one transaction, in order (as SQLite does: a 410 or a
        recovery acts on what was recorded before it), its statements sent in one pipeline."""
        if not results:
            return
        with self._tx() as db, db.pipeline():
            released: set[str] = set()
            for result in results:
                self._record(db, result, now)
                if result.state == "delivered" and result.monitor_id not in released:
                    # Leaving retry: everything stored for the monitor goes out now (§4).
                    released.add(result.monitor_id)
                    db.execute(
                        "UPDATE deliveries SET next_at = least(next_at, %s)"
                        " WHERE monitor_id = %s AND state = 'pending' AND attempts > 0",
                        (now, result.monitor_id),
                    )

    @staticmethod
    def _record(db: psycopg.Connection[Any], result: AttemptResult, now: float) -> None:
        a = result.attempt
        if a is None:
            db.execute(
                "UPDATE deliveries SET lease_until = 0 WHERE delivery_id = %s",
                (result.delivery_id,),
            )
            return
        db.execute(
            "INSERT INTO attempts VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (delivery_id, number) DO UPDATE SET started_at = excluded.started_at,"
            " duration = excluded.duration, outcome = excluded.outcome,"
            " status_code = excluded.status_code, error = excluded.error",
            (a.delivery_id, a.number, a.started_at, a.duration, a.outcome, a.status_code, a.error),
        )
        db.execute(
            "UPDATE deliveries SET state = %s, attempts = attempts + 1, tries = %s,"
            " lease_until = 0, next_at = coalesce(%s, next_at), reason = %s,"
            " delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END"
            " WHERE delivery_id = %s",
            (result.state, a.number, result.next_at, result.reason, result.state, now,
             a.delivery_id),
        )  # fmt: skip
        if result.gone:
            db.execute(
                "UPDATE deliveries SET state = 'dead', reason = %s"  # noqa: S608
                f" WHERE monitor_id = %s AND state IN {_LIVE}",
                (result.reason, result.monitor_id),
            )
            db.execute(
                "UPDATE monitors SET status = 'Failed', updated_at = %s WHERE monitor_id = %s",
                (now, result.monitor_id),
            )

    def expire(self, now: float, max_age: float) -> int:
        """Drop held notifications older than ``max_age`` to the dead-letter list."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'dead', reason = 'expired after the retry window'"
                " WHERE state = 'pending' AND attempts = 0 AND held_since + %s < %s"
                " AND lease_until <= %s AND monitor_id IN (SELECT monitor_id FROM deliveries"
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

    @staticmethod
    def _views(db: psycopg.Connection[Any], rows: Sequence[Any]) -> list[DeliveryView]:
        ids = [r[0] for r in rows]
        events: dict[str, list[str]] = {}
        history: dict[str, list[Attempt]] = {}
        if ids:
            for delivery_id, event_id in db.execute(
                "SELECT delivery_id, event_id FROM delivery_events WHERE delivery_id = ANY(%s)"
                " ORDER BY delivery_id, position",
                (ids,),
            ):
                events.setdefault(delivery_id, []).append(event_id)
            for h in db.execute(
                "SELECT delivery_id, number, started_at, duration, outcome, status_code, error"
                " FROM attempts WHERE delivery_id = ANY(%s) ORDER BY delivery_id, number",
                (ids,),
            ):
                history.setdefault(h[0], []).append(Attempt(*h))
        return [
            DeliveryView(
                delivery_id=row[0],
                monitor_id=row[1],
                state=row[2],
                url=row[3],
                event_ids=events.get(row[0], []),
                attempts=row[4],
                created_at=row[5],
                next_at=row[6] if row[2] in ("open", "pending") else None,
                delivered_at=row[7],
                reason=row[8],
                history=history.get(row[0], []),
            )
            for row in rows
        ]

    def deliveries(
        self, monitor_id: str, state: str | None, offset: int, limit: int
    ) -> tuple[list[DeliveryView], int]:
        where, params = "WHERE monitor_id = %s", [monitor_id]
        if state is not None:
            where += " AND state = %s"
            params.append(state)
        with self._tx() as db:
            count_sql = f"SELECT count(*) FROM deliveries {where}"  # noqa: S608 (constants only)
            total = db.execute(count_sql, params).fetchone()
            rows = db.execute(
                f"{_VIEW} {where} ORDER BY created_at, seq LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            return self._views(db, rows), int(total[0] if total else 0)

    def get_delivery(self, delivery_id: str) -> DeliveryView | None:
        with self._tx() as db:
            rows = db.execute(f"{_VIEW} WHERE delivery_id = %s", (delivery_id,)).fetchall()
            return self._views(db, rows)[0] if rows else None

    def resend(self, delivery_id: str, now: float, max_age: float) -> bool:
        """Put a dead-lettered delivery back in line as a new round; False if it is not dead."""
        del max_age  # the new round's age cap starts now (held_since = now)
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, held_since = %s,"
                " next_at = %s, lease_until = 0, reason = '' WHERE delivery_id = %s"
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
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'dead',"
                " reason = 'expired after the retry window: the endpoint did not answer'"
                " WHERE state = 'pending' AND endpoint = ANY(%s)"
                " AND held_since + %s < %s AND lease_until <= %s",
                (list(endpoints), max_age, now, now),
            )
            return int(cursor.rowcount)

    def purge(self, delivered_before: float, dead_before: float, limit: int) -> dict[str, int]:
        """Delete up to ``limit`` final deliveries with their attempts, and the events no
        delivery refers to any more, in one short transaction (as SQLite's). Rows another
        worker's purge holds are skipped (``SKIP LOCKED``): workers purging at once take
        different rows. Call again while ``deliveries`` or ``events`` equals ``limit``."""
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    "SELECT delivery_id FROM deliveries WHERE state = 'delivered'"
                    " AND delivered_at < %s LIMIT %s FOR UPDATE SKIP LOCKED",
                    (delivered_before, limit),
                )
            ]
            ids += [
                r[0]
                for r in db.execute(
                    "SELECT delivery_id FROM deliveries WHERE state = 'dead'"
                    " AND delivered_at IS NULL AND held_since < %s LIMIT %s"
                    " FOR UPDATE SKIP LOCKED",
                    (dead_before, limit - len(ids)),
                )
            ]
            counts = {"deliveries": 0, "attempts": 0, "delivery_events": 0}
            if ids:
                for table in ("attempts", "delivery_events", "deliveries"):
                    cursor = db.execute(
                        f"DELETE FROM {table} WHERE delivery_id = ANY(%s)",  # noqa: S608
                        (ids,),
                    )
                    counts[table] = int(cursor.rowcount)
            # Events received before ``delivered_before`` that no delivery refers to.
            cursor = db.execute(
                "DELETE FROM events WHERE event_id IN (SELECT e.event_id FROM events e"
                " WHERE e.received_at < %s AND NOT EXISTS"
                " (SELECT 1 FROM delivery_events de WHERE de.event_id = e.event_id)"
                " LIMIT %s FOR UPDATE SKIP LOCKED)",
                (delivered_before, limit),
            )
            counts["events"] = int(cursor.rowcount)
        return counts

    def resend_dead(self, monitor_id: str, now: float, limit: int) -> tuple[int, int]:
        """Put up to ``limit`` of a monitor's dead letters (oldest first) back in line, each as
        a new round (like ``resend``). Returns (re-sent, dead letters still left)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', attempts = 0, held_since = %s,"
                " next_at = %s, lease_until = 0, reason = '' WHERE delivery_id IN"
                " (SELECT delivery_id FROM deliveries WHERE monitor_id = %s AND state = 'dead'"
                "  ORDER BY created_at, seq LIMIT %s FOR UPDATE SKIP LOCKED)",
                (now, now, monitor_id, limit),
            )
            left = db.execute(
                "SELECT count(*) FROM deliveries WHERE monitor_id = %s AND state = 'dead'",
                (monitor_id,),
            ).fetchone()
        return int(cursor.rowcount), int(left[0] if left else 0)

    # -- reading what happened (issue 18) -----------------------------------------------------

    def events_page(
        self, query: EventQuery, offset: int, limit: int
    ) -> tuple[list[StoredEvent], int]:
        """Stored events matching ``query``, newest ``event_date`` first, and how many match."""
        clauses: list[str] = ["true"]
        params: list[Any] = []
        for column, value in (("vin", query.vin), ("monitor_id", query.monitor_id)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(value)
        if query.since is not None:
            clauses.append("event_date >= %s")
            params.append(query.since)
        if query.until is not None:
            clauses.append("event_date <= %s")
            params.append(query.until)
        if query.fleets is not None:  # an empty list matches nothing
            clauses.append("fleet_id = ANY(%s)")
            params.append(list(query.fleets))
        where = " AND ".join(clauses)  # fixed fragments; the values are parameters
        columns = "event_id, vin, fleet_id, monitor_id, event_date, received_at, webhook_json"
        with self._tx() as db:
            count_sql = f"SELECT count(*) FROM events WHERE {where}"  # noqa: S608
            total = db.execute(count_sql, params).fetchone()
            rows = db.execute(
                f"SELECT {columns}, skip_reason FROM events WHERE {where}"  # noqa: S608
                " ORDER BY event_date DESC, seq DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
        return [StoredEvent(*row) for row in rows], int(total[0] if total else 0)

    def set_vehicle_status(self, status: VehicleStatus) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO vehicle_status VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (vin) DO UPDATE SET online = excluded.online, at = excluded.at,"
                " version = excluded.version, outbox_depth = excluded.outbox_depth,"
                " clock = excluded.clock, received_at = excluded.received_at",
                (status.vin, status.online, status.at, status.version, status.outbox_depth,
                 status.clock, status.received_at),
            )  # fmt: skip

    def vehicle_status(self, vin: str) -> VehicleStatus | None:
        rows = self._read(
            "SELECT vin, online, at, version, outbox_depth, clock, received_at"
            " FROM vehicle_status WHERE vin = %s",
            (vin,),
        )
        if not rows:
            return None
        vin, online, at, version, depth, clock, received_at = rows[0]
        return VehicleStatus(vin, bool(online), at, version, depth, clock, received_at)
