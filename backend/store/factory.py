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
    """PostgreSQL when ``[store] url`` is set, else the SQLite file. ``durable`` (ingest): a
    commit is on disk before it returns (SQLite ``synchronous=FULL``, PostgreSQL
    ``synchronous_commit=on``); otherwise SQLite ``NORMAL``, PostgreSQL ``off``."""
    if config.store_url:
        size = pool_size or config.store_pool
        return PostgresStore(config.store_url, durable=durable, pool_size=size)
    return SqliteStore(config.store_path, durable=durable)
