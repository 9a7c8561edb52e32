"""Ingest's limits against a real mosquitto: the queue between paho and the commit worker stays
bounded under a QoS 0 flood (paho waits: back-pressure, nothing lost), a vehicle over its rate
is cut (counted) without touching the others, an oversized event is dropped before it is queued,
an error past the guard drops that message only, and a worker that dies anyway makes
``/healthz`` fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from backend.app import Backend
from backend.config import LimitsConfig, MqttConfig
from backend.ingest.intake import EventIntake, MqttIngest
from backend.metrics import Metrics
from backend.store.records import IncomingEvent
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import (
    FLEET,
    T0,
    VIN,
    BackendThread,
    add_monitor,
    load,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.mosquitto import Mosquitto, free_port, wait_for_port

TOPICS = Topics()
OTHER_VIN = "VF3OTHER000000002"


class GatedStore(SqliteStore):
    """A real store whose commits wait until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, durable=True)
        self.gate = threading.Event()

    def commit_events(self, events: Sequence[IncomingEvent], now: float) -> list[bool]:
        assert self.gate.wait(60), "the test never opened the gate"
        return super().commit_events(events, now)


def _ingest(
    store: SqliteStore, broker: Mosquitto, limits: LimitsConfig, client_id: str
) -> tuple[MqttIngest, Metrics]:
    metrics = Metrics()
    config = MqttConfig(host=broker.host, port=broker.port, client_id=client_id)
    intake = EventIntake(store, TOPICS, limits)
    ingest = MqttIngest(config, TOPICS, intake, store, metrics=metrics, max_group=4)
    ingest.start()
    assert ingest.connected.wait(10)
    return ingest, metrics


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _count(metrics: Metrics, reason: str) -> float:
    value: float = metrics.skipped.labels(reason=reason)._value.get()
    return value


def test_a_qos0_flood_waits_in_a_bounded_queue_and_nothing_is_lost(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = GatedStore(tmp_path / "backend.db")
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    limits = LimitsConfig(ingest_queue=10, vehicle_burst=1000)
    ingest, metrics = _ingest(store, mosquitto, limits, "flood")
    client = publisher(mosquitto)
    try:
        for i in range(200):
            event = make_event(mid, at=T0 + i, value=str(i))
            client.publish(TOPICS.events(VIN), event_to_json(event), qos=0)
        _wait(ingest._inbox.full, "the queue never filled")
        time.sleep(0.5)  # paho keeps receiving if it can: give it the chance to overfill
        assert ingest._inbox.qsize() == 10  # bounded: paho waits instead of queueing more
        assert ingest.alive()
        store.gate.set()
        _wait(lambda: metrics.events._value.get() == 200, "not every event was committed")
        assert _count(metrics, "worker_down") == 0
    finally:
        store.gate.set()
        stop_network_loop(client)
        client.disconnect()
        ingest.stop()
        store.close()


def test_a_vehicle_over_its_rate_is_cut_and_counted_alone(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = SqliteStore(tmp_path / "backend.db", durable=True)
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    store.put_vehicle(OTHER_VIN, FLEET, T0)
    limits = LimitsConfig(vehicle_rate=0.001, vehicle_burst=3)
    ingest, metrics = _ingest(store, mosquitto, limits, "rate")
    client = publisher(mosquitto)
    try:
        for i in range(10):
            publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, at=T0 + i)))
        other = make_event(mid, vin=OTHER_VIN, at=T0)
        publish(client, TOPICS.events(OTHER_VIN), event_to_json(other))
        _wait(lambda: metrics.events._value.get() == 4, "the allowed events were not stored")
        assert _count(metrics, "rate_limited") == 7
        assert _count(metrics, "wrong_vehicle") == 1  # the other vehicle went through the gate
    finally:
        stop_network_loop(client)
        client.disconnect()
        ingest.stop()
        store.close()


def test_an_oversized_event_is_dropped_before_the_queue(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    store = SqliteStore(tmp_path / "backend.db", durable=True)
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    ingest, metrics = _ingest(store, mosquitto, LimitsConfig(max_event_bytes=2048), "size")
    client = publisher(mosquitto)
    try:
        publish(client, TOPICS.events(VIN), b" " * 2049)
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="ok")))
        _wait(lambda: metrics.events._value.get() == 1, "the good event was not stored")
        assert _count(metrics, "too_large") == 1
    finally:
        stop_network_loop(client)
        client.disconnect()
        ingest.stop()
        store.close()


def test_an_error_past_the_guard_drops_that_message_only(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = EventIntake.prepare

    def fragile(self: EventIntake, topic: str, payload: bytes) -> IncomingEvent:
        if b'"boom"' in payload:
            raise RuntimeError("a bug in routing, say")
        return original(self, topic, payload)

    monkeypatch.setattr(EventIntake, "prepare", fragile)
    store = SqliteStore(tmp_path / "backend.db", durable=True)
    mid = add_monitor(store, monitor_definition("https://h.example/in"))
    ingest, metrics = _ingest(store, mosquitto, LimitsConfig(), "fragile")
    client = publisher(mosquitto)
    try:
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="boom")))
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="ok")))
        _wait(lambda: metrics.events._value.get() == 1, "the good event was not stored")
        assert _count(metrics, "unexpected") == 1
        assert ingest.alive()
    finally:
        stop_network_loop(client)
        client.disconnect()
        ingest.stop()
        store.close()


class WorkerKiller(BaseException):
    """Not an ``Exception``: gets past every guard, as a bug in the worker itself would."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_healthz_fails_when_the_ingest_worker_dies_anyway(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die(_self: Any, _topic: str, _payload: bytes) -> Any:
        raise WorkerKiller("a bug, not an input")

    monkeypatch.setattr(EventIntake, "prepare", die)
    port = free_port()
    mqtt = {"host": mosquitto.host, "port": mosquitto.port, "client_id": "dies"}
    backend = Backend(load(tmp_path, api={"port": port}, mqtt=mqtt))
    running = BackendThread(backend).start()
    client = publisher(mosquitto)
    try:
        wait_for_port("127.0.0.1", port)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        publish(client, TOPICS.events(VIN), event_to_json(make_event("any")))
        _wait(lambda: not running.backend.ingest.alive(), "the worker did not die")  # type: ignore[union-attr]
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["ingest"]
        assert answer.json()["parts"]["ingest"]["detail"] == "worker died"
    finally:
        stop_network_loop(client)
        client.disconnect()
        running.stop()
