"""Issue 12, findings 1, 2 and 9 against the real processes: `edgemon-backend run` and mosquitto.

1. A vehicle's poison events (a lone surrogate, a 5,000-digit number, JSON nested 5,000 deep)
   once killed the ingest worker, and, never acknowledged, killed it again at every restart.
   Now they are counted and acknowledged, and another vehicle's event still goes through, before
   and after a restart (poison published while the backend was down included).
2. The same payloads retained on a vehicle's monitor-state topics once killed the API's MQTT
   thread at every start: a monitor created afterwards was answered 202 and never reached the
   broker. Now it does, at every start.
9. An oversized body is a 413, a deep one a 400, and /healthz stays 200 through all of it.
"""

from __future__ import annotations

import contextlib
import json
import queue
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    FLEET,
    TOKEN,
    VIN,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.conftest import DATA
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GOOD_VIN = "VF3GOOD0000000002"  # VIN (of the kept payloads) is the rogue vehicle
KEPT = DATA / "fuzz" / "mqtt"
POISON = {  # reason -> payload: issue 12's three poison events, and one found fuzzing
    "bad_unicode": KEPT / "bad_unicode--lone-surrogate-in-monitor-id.json",
    "number_too_long": KEPT / "number_too_long--seq-of-5000-digits.json",
    "too_deep": KEPT / "too_deep--array-nested-5000.json",
    "malformed": KEPT / "malformed--date-before-year-1-in-utc.json",
}
MAX_BODY = 20_000


@pytest.fixture
def backend(
    tmp_path: Path, mosquitto: Mosquitto, test_ca: CertAuthority
) -> Iterator[BackendProcess]:
    config = write_backend_config(
        tmp_path,
        mosquitto,
        client_id="hostile",
        ca=test_ca,
        mqtt={"share_group": ""},  # plain subscription: the session queues what arrives while down
        sections={
            "limits": {"max_request_bytes": MAX_BODY},
            "fleets": {FLEET: {"vehicles": [VIN, GOOD_VIN]}},
        },
    )  # allow_networks: loopback, where the test receiver listens
    process = BackendProcess(config)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def vehicle(mosquitto: Mosquitto) -> Iterator[mqtt.Client]:
    client = publisher(mosquitto)
    try:
        yield client
    finally:
        stop_network_loop(client)
        client.disconnect()


def _create(backend: BackendProcess, vin: str, target: str) -> str:
    created = httpx.post(
        f"{backend.url}/vehicles/{vin}/monitors", json=monitor_definition(target), headers=AUTH
    )
    assert created.status_code == 202, created.text
    return str(created.json()["monitorId"])


def _send_poison(client: mqtt.Client) -> None:
    for path in POISON.values():
        publish(client, TOPICS.events(VIN), path.read_bytes())


def _good(client: mqtt.Client, mid: str, value: str) -> None:
    publish(
        client, TOPICS.events(GOOD_VIN), event_to_json(make_event(mid, vin=GOOD_VIN, value=value))
    )


def _literals(rx: Receiver, count: int) -> list[str]:
    bodies = [json.loads(r.body) for r in rx.wait_for(count)]
    return sorted(b["events"][0]["values"][0]["value"]["body"]["literalValue"] for b in bodies)


def test_poison_events_are_dropped_and_ingest_goes_on_across_restarts(
    backend: BackendProcess, vehicle: mqtt.Client, receivers: Callable[..., Receiver]
) -> None:
    rx = receivers()
    backend.start()
    mid = _create(backend, GOOD_VIN, rx.url)
    _send_poison(vehicle)
    _good(vehicle, mid, "after-poison")
    assert _literals(rx, 1) == ["after-poison"]
    for reason in POISON:
        backend.wait_metric("edgemon_ingest_skipped_total", reason, 1)
    assert backend.healthy()
    assert backend.stop() == 0

    _send_poison(vehicle)  # queued in the backend's session while it is down
    _good(vehicle, mid, "while-down")
    backend.start()
    assert _literals(rx, 2) == ["after-poison", "while-down"]
    _good(vehicle, mid, "after-restart")
    assert _literals(rx, 3) == ["after-poison", "after-restart", "while-down"]
    for reason in POISON:  # the first three were acknowledged: only the new ones come
        backend.wait_metric("edgemon_ingest_skipped_total", reason, 1)
        assert backend.metric("edgemon_ingest_skipped_total", reason) == 1
    assert backend.metric("edgemon_events_ingested_total") == 2
    assert backend.healthy()
    assert backend.stop() == 0


def _retained(broker: Mosquitto, topic: str) -> bytes:
    """The retained message on ``topic``, as a subscriber arriving now sees it."""
    seen: queue.Queue[bytes] = queue.Queue()
    client = publisher(broker)
    client.on_message = lambda _c, _u, m: seen.put(bytes(m.payload))
    client.subscribe(topic, qos=1)
    try:
        return seen.get(timeout=15)
    finally:
        stop_network_loop(client)
        client.disconnect()


def test_poison_retained_states_do_not_stop_monitors_reaching_the_broker(
    backend: BackendProcess, vehicle: mqtt.Client, mosquitto: Mosquitto
) -> None:
    for i, path in enumerate(POISON.values()):
        topic = TOPICS.monitor_state(VIN, f"m-poison-{i}")
        vehicle.publish(topic, path.read_bytes(), qos=1, retain=True).wait_for_publish(10)
    for start in range(2):  # the retained poison is there at every start
        backend.start()
        with contextlib.suppress(AssertionError):  # (the old code never counted them all)
            backend.wait_metric(
                "edgemon_ingest_skipped_total", "bad_monitor_state", len(POISON), 10
            )
        mid = _create(backend, GOOD_VIN, "https://hooks.example/in")
        try:
            retained = _retained(mosquitto, TOPICS.vehicle_monitor(GOOD_VIN, mid))
        except queue.Empty:
            raise AssertionError(f"start {start}: the monitor never reached the broker") from None
        assert b'"status":"Running"' in retained, f"start {start}: {retained[:200]!r}"
        assert backend.metric("edgemon_ingest_skipped_total", "bad_monitor_state") == len(POISON)
        assert backend.healthy()
        assert backend.stop() == 0


def test_hostile_bodies_are_refused_by_the_running_api(
    backend: BackendProcess, mosquitto: Mosquitto
) -> None:
    backend.start()
    url = f"{backend.url}/vehicles/{GOOD_VIN}/monitors"
    big = httpx.post(url, content=b" " * (MAX_BODY + 1), headers=AUTH)
    assert big.status_code == 413 and big.json()["code"] == 41300
    deep = httpx.post(url, content=b"[" * 5000 + b"]" * 5000, headers=AUTH)
    assert deep.status_code == 400 and deep.json()["code"] == 40000
    assert backend.healthy()
    mid = _create(backend, GOOD_VIN, "https://hooks.example/in")  # and it still works
    assert b'"status":"Running"' in _retained(mosquitto, TOPICS.vehicle_monitor(GOOD_VIN, mid))
    assert backend.stop() == 0
