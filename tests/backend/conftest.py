"""Backend fixtures: a trustme test CA, HTTPS receivers, a store, monitors and events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.model import Event, EventValue, Extension
from agent.wire import Topics, event_to_json, uuid7
from backend.app import ROLES, Backend
from backend.config import ADMIN, SCOPES, ApiToken, config_from_dict
from backend.ingest.intake import EventIntake
from backend.store.records import MonitorRecord, Store
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.support.mosquitto import Mosquitto, free_port, wait_for_port
from tests.support.postgres import PostgresServer

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TOKEN = "test-token-0123456789"
READ_ONLY = "read-only-token-0123456789"
VIN = "VF3TEST0000000001"
FLEET = "fleet-1"
T0 = 1_800_000_000.0


def api_tokens() -> tuple[ApiToken, ...]:
    """TOKEN reaches every fleet (admin); READ_ONLY reads FLEET only."""
    reads = frozenset({"monitors:read", "deliveries:read"})
    return (
        ApiToken(TOKEN, frozenset({*SCOPES, ADMIN}), "admin"),
        ApiToken(READ_ONLY, reads, "reader", frozenset({FLEET})),
    )


class ManualClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def receivers(test_ca: CertAuthority) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def make(tls: bool = True) -> Receiver:
        receiver = Receiver(test_ca.server_context() if tls else None).start()
        started.append(receiver)
        return receiver

    try:
        yield make
    finally:
        for receiver in started:
            receiver.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run (started on first use, stopped by its PID)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated database of its own for one test."""
    url = postgres_server.database()
    try:
        yield url
    finally:
        postgres_server.drop(url)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "backend.db", durable=True)
    s.put_vehicle(VIN, FLEET, T0)  # events are routed by the backend's record of the fleet
    try:
        yield s
    finally:
        s.close()


def monitor_definition(
    target: str,
    *,
    policy: str = "None",
    retry_number: int = 3,
    retry_delay: int = 10,
    batch: tuple[int, int] | None = None,
    attributes: list[dict[str, str]] | None = None,
    name: str = "cb1",
) -> dict[str, Any]:
    subscribe: dict[str, Any] = {
        "retryPolicy": {"policy": policy, "retryNumber": retry_number, "retryDelay": retry_delay},
        "callback": {"webhook": {"target": target, "name": name, "attributes": attributes or []}},
    }
    if batch is not None:
        subscribe["batchNotify"] = {"size": batch[0], "timeWindow": batch[1]}
    return {
        "label": "oil hot",
        "subscribeParam": subscribe,
        "extendedEventParam": ["vehicle.position"],
        "triggerParam": {
            "triggers": [
                {
                    "name": "hot",
                    "data": {
                        "data": "vehicle.engines.thermic.oil.temp",
                        "op": "greaterThan",
                        "value": ["130"],
                    },
                }
            ],
            "boolExp": "hot",
        },
    }


def add_monitor(store: Store, definition: dict[str, Any], *, monitor_id: str | None = None) -> str:
    mid = monitor_id or uuid7()
    store.put_vehicle(VIN, FLEET, T0)  # routed by the backend's record of the vehicle's fleet
    store.create_monitor(MonitorRecord(mid, "vehicle", VIN, definition, "Running", T0, T0))
    return mid


def make_event(monitor_id: str, *, vin: str = VIN, at: float = T0, value: str = "131") -> Event:
    return Event(
        event_id=uuid7(int(at * 1000)),
        seq=1,
        vin=vin,
        fleet_id=FLEET,
        monitor_id=monitor_id,
        event_date=datetime.fromtimestamp(at, tz=UTC),
        refresh=False,
        values=(EventValue("vehicle.engines.thermic.oil.temp", value, "129"),),
        extensions=(Extension("vehicle.position", {"latitude": 48.85, "longitude": 2.35}),),
    )


def ingest_events(store: Store, events: list[Event], now: float) -> list[bool]:
    """Route and commit events the way MQTT ingest does (without the broker)."""
    intake = EventIntake(store, Topics())
    topics = Topics()
    prepared = [intake.prepare(topics.events(e.vin), event_to_json(e)) for e in events]
    return store.commit_events(prepared, now)


def backend_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "store": {"path": str(tmp_path / "backend.db")},
        "api": {
            "tokens": [
                {"token": TOKEN, "scopes": [*SCOPES, ADMIN]},
                {
                    "token": READ_ONLY,
                    "scopes": ["monitors:read", "deliveries:read"],
                    "fleets": [FLEET],
                },
            ]
        },
        "webhooks": {"default_secret": SECRET, "allow_networks": ["127.0.0.0/8", "::1/128"]},
        "dispatcher": {"poll_interval": 0.05},
    }
    for key, value in overrides.items():
        raw.setdefault(key, {}).update(value)
    return raw


def load(tmp_path: Path, **overrides: Any) -> Any:
    return config_from_dict(backend_config(tmp_path, **overrides), tmp_path)


class BackendThread:
    """A ``Backend`` running its roles on an event loop in a thread, stopped cleanly."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="backend", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self.backend.run(self._stop)

        asyncio.run(run())

    def start(self) -> BackendThread:
        self._thread.start()
        self._ready.wait(10)
        deadline = time.monotonic() + 10
        while self.backend.ingest is None and "ingest" in self.backend.roles:
            if time.monotonic() > deadline:
                raise TimeoutError("ingest did not start")
            time.sleep(0.01)
        if self.backend.ingest is not None and not self.backend.ingest.connected.wait(10):
            raise TimeoutError("ingest did not connect")
        while self.backend.channel is None and "api" in self.backend.roles:
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not start")
            time.sleep(0.01)
        if self.backend.channel is not None and not self.backend.channel.connected.wait(10):
            raise TimeoutError("the monitor channel did not connect")  # /healthz would be 503
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    broker: Mosquitto,
    client_id: str,
    *,
    roles: frozenset[str] = frozenset(),
    status_sync_interval: float = 5.0,
    **overrides: Any,
) -> Iterator[str]:
    """A ``Backend`` (``roles``, empty for all) with ``backend_config``'s settings, its API on a
    free port and ``broker`` as ``client_id``, run in a thread: yields the API's URL once its
    port answers, stops it on leaving."""
    port = free_port()
    config = load(
        tmp_path,
        api={"port": port},
        mqtt={"host": broker.host, "port": broker.port, "client_id": client_id},
        **overrides,
    )
    backend = Backend(config, roles or frozenset(ROLES), status_sync_interval=status_sync_interval)
    running = BackendThread(backend).start()
    try:
        wait_for_port("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}"
    finally:
        running.stop()


def publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid7()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1).wait_for_publish(10)
