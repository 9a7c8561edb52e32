"""The API as it runs: retained monitor topics on a real mosquitto, agents' state reports read
back, and schemathesis fuzzing the live server from its own OpenAPI document."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, monitor_state_to_json
from tests.backend.conftest import (
    TOKEN,
    VIN,
    monitor_definition,
    publish,
    publisher,
    serving,
)
from tests.support.mosquitto import Mosquitto

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOPICS = Topics()


@pytest.fixture
def live_api(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    roles = frozenset({"api"})
    with serving(tmp_path, mosquitto, "api-test", roles=roles, status_sync_interval=0.1) as api:
        yield api


def _watch(broker: Mosquitto, topic: str) -> tuple[mqtt.Client, queue.Queue[bytes]]:
    seen: queue.Queue[bytes] = queue.Queue()
    client = publisher(broker)
    client.on_message = lambda _c, _u, m: seen.put(bytes(m.payload))
    client.subscribe(topic, qos=1)
    return client, seen


def test_monitor_lifecycle_drives_retained_topics(live_api: str, mosquitto: Mosquitto) -> None:
    definition = monitor_definition("https://hooks.example/in")
    ref = httpx.post(f"{live_api}/vehicles/{VIN}/monitors", json=definition, headers=AUTH)
    assert ref.status_code == 202
    mid = ref.json()["monitorId"]
    topic = TOPICS.vehicle_monitor(VIN, mid)
    watcher, seen = _watch(mosquitto, topic)  # subscribes after the publish: sees the retained
    agent = publisher(mosquitto)
    try:
        retained = json.loads(seen.get(timeout=10))
        assert retained["status"] == "Running" and retained["label"] == "oil hot"
        # what a vehicle reads: what it evaluates, no webhook target, attributes or retry policy
        assert set(retained) == {"status", "label", "triggerParam", "extendedEventParam"}
        assert "hooks.example" not in json.dumps(retained)
        url = f"{live_api}/vehicles/{VIN}/monitors/{mid}"
        paused = httpx.put(f"{url}/status", json={"status": "Paused"}, headers=AUTH)
        assert paused.status_code == 202
        assert json.loads(seen.get(timeout=10))["status"] == "Paused"

        state = monitor_state_to_json(
            monitor_id=mid,
            applied=False,
            at=datetime.now(tz=UTC),
            reasons=[{"path": "$.triggerParam", "message": "no such signal"}],
        )
        publish(agent, TOPICS.monitor_state(VIN, mid), state)
        for _ in range(100):
            vehicles = httpx.get(url, headers=AUTH).json()["vehicles"]
            if vehicles:
                break
            time.sleep(0.05)
        assert vehicles[0]["vin"] == VIN and vehicles[0]["state"] == "rejected"
        assert vehicles[0]["reasons"][0]["message"] == "no such signal"

        assert httpx.delete(url, headers=AUTH).status_code == 204
        assert seen.get(timeout=10) == b""  # the retained definition is cleared
    finally:
        for client in (watcher, agent):
            stop_network_loop(client)
            client.disconnect()


def test_schemathesis_finds_no_server_error_and_responses_match_the_document(
    live_api: str, tmp_path: Path
) -> None:
    """Every response is checked against the hand-written document (backend/api/openapi.py): its
    body against the schema, its status code and content type against those documented, not
    only for server errors (a body that drifts from the document fails here: ST108)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{live_api}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--header",
            f"Authorization: Bearer {TOKEN}",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "8",
            "--max-time",
            "20",
            "--request-timeout",
            "15",
            "--seed",
            "7",
            "--report-dir",
            str(tmp_path / "st"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = result.stdout[result.stdout.find("SUMMARY") :]
    assert result.returncode == 0, summary[-3000:] + result.stderr[-2000:]
    assert "Selected: 28/28" in result.stdout and " passed" in summary


def test_a_monitor_failed_by_the_dispatcher_is_republished(
    live_api: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from backend.store.sqlite import SqliteStore

    definition = monitor_definition("https://hooks.example/in")
    ref = httpx.post(f"{live_api}/fleets/f1/monitors", json=definition, headers=AUTH).json()
    watcher, seen = _watch(mosquitto, TOPICS.fleet_monitor("f1", ref["monitorId"]))
    try:
        assert json.loads(seen.get(timeout=10))["status"] == "Running"
        store = SqliteStore(tmp_path / "backend.db")  # what a dispatcher does on 410 Gone
        store.set_monitor_status(ref["monitorId"], "Failed", time.time())
        store.close()
        assert json.loads(seen.get(timeout=10))["status"] == "Failed"
    finally:
        stop_network_loop(watcher)
        watcher.disconnect()
