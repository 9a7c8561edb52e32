"""The durable outbox: every event is committed to SQLite before it is published, and removed only
when the broker acknowledges it (QoS 1 PUBACK).

Durability. The database runs in WAL mode. Appends commit with ``synchronous=FULL`` (the WAL is
fsynced at each commit, so an event survives a power cut once ``append`` returns); a burst of
events is one transaction, so a burst costs one fsync. Acknowledgements commit with
``synchronous=NORMAL``: a power cut may forget the last acks, which only means those events are
published again with the same event id (the backend de-duplicates by id). ``synchronous=normal``
in the config makes appends NORMAL too (survives a crash of the agent, not of the machine).

Order. Events carry the per-vehicle sequence number ``seq`` (the table's primary key), allocated by
``next()`` (the engine's ``Sequence``); ``pending()`` returns them in ``seq`` order, so after a
reconnect or a restart the oldest unacknowledged event goes out first. ``seq`` never repeats: the
highest value handed out is committed with the events that use it.

Bounds and drop policy. The outbox holds at most ``max_events`` events and ``max_bytes`` of
payload, and nothing older than ``max_age`` seconds (by the trusted clock at commit). When a
bound is exceeded the *oldest* events are dropped (a fresh event is worth more than a stale one)
and counted in ``dropped`` (persisted in the database, reported in the status message). Count and
size are enforced inside the append's own transaction; age by ``prune()``, which the main loop
calls every 30 s. Dropping never reorders what remains.

Files. The database (and SQLite's ``-wal``/``-shm`` beside it) is 0600 and a folder it creates
0700, with or without systemd's ``UMask``.

Fired state. The engine's armed/fired state per monitor (``FiredStore``) lives in the same
database. ``save``/``delete`` are buffered and committed with the next ``append`` (or ``commit``),
so "fired" and the event it produced land in one transaction: a crash can lose both or neither.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import OutboxError
from agent.model import Event
from agent.wire import event_to_json

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq      INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    vin      TEXT NOT NULL,
    created  REAL NOT NULL,
    size     INTEGER NOT NULL,
    payload  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created ON events (created);
CREATE TABLE IF NOT EXISTS fired (
    monitor_id TEXT PRIMARY KEY,
    state      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

_DELETE = object()  # marks a buffered FiredStore.delete


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event waiting for its PUBACK: what the publisher needs, nothing more."""

    seq: int
    event_id: str
    vin: str
    payload: bytes


class Outbox:
    """SQLite outbox; also the engine's ``Sequence`` and ``FiredStore``.

    Single-threaded: only the main loop calls it (callbacks of other threads go through queues).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_events: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 7 * 86400.0,
        synchronous: str = "full",
        fired_type: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._sync_append = "FULL" if synchronous.lower() == "full" else "NORMAL"
        self._fired_type = fired_type
        self._clock = clock
        self._fired_pending: dict[str, object] = {}
        self._db = self._open()
        self._seq = max(self._meta("seq"), self._scalar("SELECT MAX(seq) FROM events"))
        self._dropped = self._meta("dropped")
        self._depth = self._scalar("SELECT COUNT(*) FROM events")
        self._bytes = self._scalar("SELECT SUM(size) FROM events")
        self.counters: dict[str, int] = {"appended": 0, "acked": 0, "dropped_age": 0}
        self.counters |= {"dropped_count": 0, "dropped_bytes": 0}

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(self.path)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        return db

    def _scalar(self, sql: str, *args: object) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row[0] or 0) if row else 0

    def _meta(self, key: str) -> int:
        return self._scalar("SELECT value FROM meta WHERE key = ?", key)

    def close(self) -> None:
        if self._fired_pending:
            self.commit()
        self._db.close()

    # -- Sequence --------------------------------------------------------------------------------

    def next(self) -> int:
        """The next per-vehicle sequence number (persisted with the events that use it)."""
        self._seq += 1
        return self._seq

    # -- events ----------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest sequence number handed out so far."""
        return self._seq

    @property
    def dropped(self) -> int:
        """Events dropped by the bounds since the database was created."""
        return self._dropped

    def depth(self) -> int:
        return self._depth

    def append(self, events: Iterable[Event], now: float | None = None) -> int:
        """Commit a batch of events (and buffered fired state) in one transaction.

        Returns how many events were committed. Raises OutboxError when the disk refuses.
        """
        now = self._clock() if now is None else now
        rows = [
            (e.seq, e.event_id, e.vin, now, len(p), p) for e in events for p in (event_to_json(e),)
        ]
        if not rows and not self._fired_pending:
            return 0
        try:
            self._db.execute(f"PRAGMA synchronous={self._sync_append}")
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO events (seq, event_id, vin, created, size, payload)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._write_fired()
                self._set_meta("seq", self._seq)
                self._depth += len(rows)
                self._bytes += sum(r[4] for r in rows)
                self._enforce_bounds(None)
        except sqlite3.Error as exc:
            self._reload_counts()
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        self._fired_pending.clear()
        self.counters["appended"] += len(rows)
        return len(rows)

    def commit(self) -> None:
        """Commit buffered fired state on its own (when a step produced no event)."""
        self.append((), None)

    def pending(self, limit: int = 100, after_seq: int = 0) -> list[PendingEvent]:
        """Unacknowledged events in ``seq`` order, starting after ``after_seq``."""
        cursor = self._db.execute(
            "SELECT seq, event_id, vin, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [PendingEvent(int(s), str(i), str(v), bytes(p)) for s, i, v, p in cursor]

    def ack(self, event_id: str) -> bool:
        """Remove one acknowledged event; False when it was not there (already acked or dropped)."""
        return self.ack_many([event_id]) == 1

    def ack_many(self, event_ids: Sequence[str]) -> int:
        """Remove acknowledged events in one transaction; returns how many were removed."""
        if not event_ids:
            return 0
        try:
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction():
                removed = 0
                for event_id in event_ids:
                    row = self._db.execute(
                        "DELETE FROM events WHERE event_id = ? RETURNING size", (event_id,)
                    ).fetchone()
                    if row is not None:
                        removed += 1
                        self._bytes -= int(row[0])
        except sqlite3.Error as exc:
            self._reload_counts()
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        self._depth -= removed
        self.counters["acked"] += removed
        return removed

    def prune(self, now: float | None = None) -> int:
        """Apply the age bound without an append (called now and then by the main loop)."""
        before = self._dropped
        now = self._clock() if now is None else now
        try:
            with self._transaction():
                self._enforce_bounds(now)
        except sqlite3.Error as exc:
            self._reload_counts()
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        return self._dropped - before

    def _enforce_bounds(self, now: float | None) -> None:
        """Drop the oldest events beyond the bounds (inside a transaction).

        Count and size use the in-memory totals, so an append costs no scan; the age bound (an
        indexed range delete) runs only when ``now`` is given, i.e. from ``prune``.
        """
        dropped = 0
        if now is not None:
            rows = self._db.execute(
                "DELETE FROM events WHERE created < ? RETURNING size", (now - self.max_age,)
            ).fetchall()
            dropped += self._forget(rows, "dropped_age")
        if self._depth > self.max_events:
            rows = self._db.execute(
                "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY seq"
                " LIMIT 1 OFFSET ?) RETURNING size",
                (self._depth - self.max_events - 1,),
            ).fetchall()
            dropped += self._forget(rows, "dropped_count")
        if self._bytes > self.max_bytes:
            last = self._oldest_covering(self._bytes - self.max_bytes)
            rows = self._db.execute(
                "DELETE FROM events WHERE seq <= ? RETURNING size", (last,)
            ).fetchall()
            dropped += self._forget(rows, "dropped_bytes")
        if dropped:
            self._dropped += dropped
            self._set_meta("dropped", self._dropped)
            log.warning("outbox bounds: dropped the %d oldest event(s)", dropped)

    def _oldest_covering(self, excess: int) -> int:
        """The seq up to which the oldest events add up to at least ``excess`` bytes."""
        total, last = 0, 0
        for seq, size in self._db.execute("SELECT seq, size FROM events ORDER BY seq"):
            total, last = total + int(size), int(seq)
            if total >= excess:
                break
        return last

    def _forget(self, rows: list[Any], counter: str) -> int:
        self._depth -= len(rows)
        self._bytes -= sum(int(r[0]) for r in rows)
        self.counters[counter] += len(rows)
        return len(rows)

    def _reload_counts(self) -> None:
        self._depth = self._scalar("SELECT COUNT(*) FROM events")
        self._bytes = self._scalar("SELECT SUM(size) FROM events")
        self._dropped = self._meta("dropped")

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # -- FiredStore ------------------------------------------------------------------------------

    def load(self, monitor_id: str) -> Any:
        """The saved fired state of a monitor, or None."""
        if monitor_id in self._fired_pending:
            buffered = self._fired_pending[monitor_id]
            return None if buffered is _DELETE else buffered
        row = self._db.execute(
            "SELECT state FROM fired WHERE monitor_id = ?", (monitor_id,)
        ).fetchone()
        if row is None:
            return None
        obj = json.loads(row[0])
        return self._fired_type(**obj) if self._fired_type is not None else obj

    def save(self, monitor_id: str, state: Any) -> None:
        self._fired_pending[monitor_id] = state

    def delete(self, monitor_id: str) -> None:
        self._fired_pending[monitor_id] = _DELETE

    def _write_fired(self) -> None:
        for monitor_id, state in self._fired_pending.items():
            if state is _DELETE:
                self._db.execute("DELETE FROM fired WHERE monitor_id = ?", (monitor_id,))
                continue
            self._db.execute(
                "INSERT INTO fired (monitor_id, state) VALUES (?, ?)"
                " ON CONFLICT(monitor_id) DO UPDATE SET state = excluded.state",
                (monitor_id, _fired_json(state)),
            )


def _fired_json(state: object) -> str:
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return json.dumps(dataclasses.asdict(state), sort_keys=True)
    return json.dumps(state, sort_keys=True)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def _private(path: Path) -> None:
    """Create the database file 0600 (owner only) before SQLite opens it, whatever the umask:
    events carry positions and VINs. SQLite gives its ``-wal`` and ``-shm`` files the mode of
    the database file. An existing file made by an older version is narrowed to 0600."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists() and side.stat().st_mode & 0o077:
            side.chmod(0o600)
