"""Health that tells the truth (issue 18): ``/healthz`` fails while the real broker is stopped and
recovers when it is started again on the same port; each broker connection change is logged
once; a monitor created while the broker is away says ``delivery: pending`` and turns
``pushed`` (and reaches a subscriber) once the broker is back."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics
from tests.backend.conftest import TOKEN, VIN, monitor_definition, publisher, serving
from tests.support.mosquitto import Mosquitto

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def running(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    fleets = {"fleet-1": {"vehicles": [VIN]}}
    with serving(
        tmp_path, mosquitto, "health-test", status_sync_interval=0.2, fleets=fleets
    ) as api:
        yield api


def _health(api: str) -> tuple[int, dict[str, Any]]:
    answer = httpx.get(f"{api}/healthz")
    return answer.status_code, answer.json()


def _lost_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "backend.mqtt_clients" and r.levelno == logging.WARNING
    ]


def test_healthz_follows_the_broker_and_monitors_wait_for_it(
    running: str, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backend.mqtt_clients")
    _code, body = _until(lambda: (h := _health(running))[0] == 200 and h, "healthy at start")
    assert set(body["parts"]) == {"api", "broker", "dispatcher", "ingest", "store"}
    assert body["failing"] == [] and all(p["ok"] for p in body["parts"].values())
    monitors = f"{running}/vehicles/{VIN}/monitors"
    before = httpx.post(monitors, json=monitor_definition("https://hooks.example/a"), headers=AUTH)
    assert before.status_code == 202
    first = before.json()["monitorId"]
    assert before.json()["delivery"] == "pushed"  # the API waited for the broker's PUBACK

    mosquitto.stop()
    _code, body = _until(lambda: (h := _health(running))[0] == 503 and h, "503 without broker")
    assert body["status"] == "failing" and body["failing"] == ["broker"]
    assert body["parts"]["broker"]["ok"] is False
    assert "ingest: no broker" in body["parts"]["broker"]["detail"]
    assert body["parts"]["store"]["ok"] and body["parts"]["ingest"]["ok"]
    # a reconnection attempt has failed since (the latest reason is kept), still one line each
    _until(lambda: "connection failed" in _health(running)[1]["parts"]["broker"]["detail"], "retry")
    lost = _lost_lines(caplog)
    assert len([line for line in lost if line.startswith("ingest: lost")]) == 1, lost
    assert len([line for line in lost if line.startswith("monitor channel: lost")]) == 1, lost
    assert len(lost) == 2, lost  # failed reconnection attempts are not logged again

    created = httpx.post(monitors, json=monitor_definition("https://hooks.example/b"), headers=AUTH)
    assert created.status_code == 202 and created.json()["delivery"] == "pending"
    mid = created.json()["monitorId"]
    assert httpx.get(f"{monitors}/{mid}", headers=AUTH).json()["delivery"] == "pending"

    mosquitto.start()  # the same port
    _until(lambda: _health(running)[0] == 200, "healthy again")
    _until(
        lambda: httpx.get(f"{monitors}/{mid}", headers=AUTH).json()["delivery"] == "pushed",
        "the pending monitor pushed",
    )
    assert httpx.get(f"{monitors}/{first}", headers=AUTH).json()["delivery"] == "pushed"
    back = [r.getMessage() for r in caplog.records if "connected to the broker" in r.getMessage()]
    assert len(back) == 2, back  # each client once, after the outage
    seen: list[bytes] = []
    watcher = publisher(mosquitto)  # the broker restarted empty: what it holds was republished
    try:
        watcher.on_message = lambda _c, _u, m: seen.append(bytes(m.payload))
        watcher.subscribe(Topics().vehicle_monitor(VIN, mid), qos=1)
        _until(lambda: seen, "the retained definition on the restarted broker")
    finally:
        stop_network_loop(watcher)
        watcher.disconnect()
    assert json.loads(seen[0])["status"] == "Running"
