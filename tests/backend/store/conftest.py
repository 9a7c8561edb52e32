"""The store contract tests run against both stores: ``store`` is SQLite (a file in the test's
directory) and PostgreSQL (a fresh database on the session's real server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.store.postgres import PostgresStore
from backend.store.records import Store
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import FLEET, T0, VIN


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "backend.db", durable=True)
    else:
        s = PostgresStore(request.getfixturevalue("postgres_url"))
    s.put_vehicle(VIN, FLEET, T0)  # events are routed by the backend's record of the fleet
    try:
        yield s
    finally:
        s.close()
