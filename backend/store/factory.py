"""``open_store``: the store the configuration names. The engine (ingest, dispatcher, API) only
sees the ``Store`` interface."""

from __future__ import annotations

from backend.config import BackendConfig
from backend.store.postgres import PostgresStore
from backend.store.records import Store
from backend.store.sqlite import SqliteStore


def open_store(
    config: BackendConfig, *, durable: bool = False, pool_size: int | None = None
) -> Store:
    """PostgreSQL when ``[store] url`` is set, else the SQLite file. ``durable`` (ingest):
    SQLite commits with ``synchronous=FULL``; PostgreSQL's commits are durable anyway (its
    server's ``synchronous_commit``)."""
    if config.store_url:
        return PostgresStore(config.store_url, pool_size=pool_size or config.store_pool)
    return SqliteStore(config.store_path, durable=durable)
