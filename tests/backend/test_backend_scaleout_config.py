"""Configuration of several workers: [store] url, [mqtt] shards, ``run --shard N``, and the
systemd template unit that runs worker N (its `systemd-analyze verify` is in
tests/agent/daemon/test_daemon_systemd.py, with every unit)."""

from __future__ import annotations

import asyncio
import configparser
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from backend.api.routes import ApiContext, build_api
from backend.config import as_shard
from backend.delivery.dispatcher import Dispatcher
from backend.delivery.egress import LOOPBACK_ALLOWED
from backend.delivery.signing import secret_key
from backend.delivery.webhooks import AiohttpSender
from backend.errors import ConfigError
from backend.ingest.intake import shard_of
from backend.metrics import Metrics
from backend.monitor_channel import MemoryMonitorChannel
from backend.store.factory import open_store
from backend.store.postgres import PostgresStore
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    FLEET,
    SECRET,
    T0,
    VIN,
    add_monitor,
    ingest_events,
    load,
    make_event,
    monitor_definition,
)
from tests.conftest import ROOT
from tests.support.postgres import PostgresServer


def test_a_postgresql_url_selects_the_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    config = load(tmp_path, store={"url": postgres_url, "pool_size": 2})
    store = open_store(config)
    try:
        assert isinstance(store, PostgresStore)
        store.ping()
    finally:
        store.close()
    default = open_store(load(tmp_path))
    try:
        assert isinstance(default, SqliteStore)  # the embedded default
    finally:
        default.close()


def test_ingest_commits_synchronously_and_the_other_roles_do_not(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
) -> None:
    """As SQLite: FULL for ingest (on disk before the MQTT ack), NORMAL for the others. Ingest
    keeps the server's setting (an operator's ``remote_apply`` stays); the test server's is
    off, so this database says on."""
    name = postgres_url.rsplit("/", 1)[1]
    postgres_server.execute(f"ALTER DATABASE {name} SET synchronous_commit = on")
    config = load(tmp_path, store={"url": postgres_url})
    for durable, expected in ((True, "on"), (False, "off")):
        store = open_store(config, durable=durable)
        try:
            assert isinstance(store, PostgresStore)
            assert store._read("SHOW synchronous_commit") == [(expected,)]
        finally:
            store.close()


def test_bad_store_and_shard_settings_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, store={"url": "mysql://x/y"}, mqtt={"shard_count": 2, "shard_index": 2})
    paths = {p.path for p in info.value.problems}
    assert {"$.store.url", "$.mqtt.shard_index"} <= paths


def test_run_shard_sets_the_shard_and_a_client_id_per_worker(tmp_path: Path) -> None:
    config = load(tmp_path, mqtt={"shard_count": 3, "client_id": "edgemon-backend"})
    worker = as_shard(config, 2)
    assert worker.mqtt.shard_index == 2 and worker.mqtt.client_id == "edgemon-backend-2"
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        as_shard(config, 3)


def test_every_vin_has_exactly_one_shard_and_shards_are_stable() -> None:
    vins = [f"VF3SHARD{n:09d}" for n in range(3000)]
    counts = [sum(shard_of(v, 3) == s for v in vins) for s in range(3)]
    assert sum(counts) == 3000 and min(counts) > 800  # spread, none empty
    assert shard_of("VF3SHARD000000001", 3) == shard_of("VF3SHARD000000001", 3)
    assert shard_of("VF3SHARD000000001", 1) == 0
    assert shard_of("WVWZZZ1JZXW000001", 7) == 4  # crc32: the same in every process/release


def test_the_worker_template_runs_ingest_and_dispatch_for_its_shard() -> None:
    unit = configparser.RawConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "systemd" / "edgemon-backend@.service").read_text())
    service = unit["Service"]
    command = service["ExecStart"].split()
    assert command[1:] == [
        "run", "-c", "/etc/edgemon/backend.toml",
        "--role", "ingest", "--role", "dispatcher", "--shard", "%i",
    ]  # fmt: skip
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always"
    assert "postgresql.service" in unit["Unit"]["After"]


def test_healthz_fails_when_the_database_is_gone(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url, pool_size=1, connect_timeout=2)
    try:
        with TestClient(build_api(ApiContext(store, MemoryMonitorChannel(), Metrics(), ()))) as c:
            assert c.get("/healthz").status_code == 200
            postgres_server.drop(postgres_url)  # its connections are closed (FORCE)
            response = c.get("/healthz")
        assert response.status_code == 503
        assert "store" in response.json()["failing"]
    finally:
        store.close()


def test_the_dispatcher_waits_out_a_database_outage(
    postgres_server: PostgresServer,
    postgres_url: str,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failover cuts every connection: the dispatcher logs it once, asks again every second
    and delivers once the database answers; its task does not end (no restart needed)."""
    rx = receivers()
    store = PostgresStore(postgres_url, pool_size=2, durable=False, connect_timeout=2)
    try:
        store.put_vehicle(VIN, FLEET, T0)
        mid = add_monitor(store, monitor_definition(rx.url))
        ingest_events(store, [make_event(mid, at=time.time() + i) for i in range(3)], time.time())
        name = postgres_url.rsplit("/", 1)[1]
        # The outage: new connections refused and the open ones cut, until it is lifted.
        postgres_server.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")
        postgres_server.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        sender = AiohttpSender(verify=test_ca.client_context(), policy=LOOPBACK_ALLOWED)
        d = Dispatcher(store, sender, lambda _f: secret_key(SECRET), poll_interval=0.05)

        async def main() -> bool:
            stop = asyncio.Event()
            task = asyncio.create_task(d.run(stop))
            try:
                while "store unavailable" not in caplog.text:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.5)  # a retry or two while it is still away
                postgres_server.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")
                while len(rx.requests) < 3:
                    await asyncio.sleep(0.05)
                return task.done()
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
                await sender.close()

        with caplog.at_level(logging.INFO, logger="backend.delivery.dispatcher"):
            ended_early = asyncio.run(asyncio.wait_for(main(), 60))
        assert not ended_early
        assert caplog.text.count("store unavailable") == 1 and "available again" in caplog.text
        assert store.deliveries(mid, "delivered", 0, 10)[1] == 3
    finally:
        store.close()
