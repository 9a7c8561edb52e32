"""The whole backend as one process (`edgemon-backend run`, every role): API -> retained monitor,
MQTT event -> signed webhook, /metrics counts it, SIGTERM stops it cleanly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    FLEET,
    SECRET,
    TOKEN,
    VIN,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_one_process_runs_every_role_and_stops_on_sigterm(
    tmp_path: Path,
    mosquitto: Mosquitto,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers()
    config = write_backend_config(tmp_path, mosquitto, client_id="whole", ca=test_ca)
    backend = BackendProcess(config, stop_timeout=15)
    client = publisher(mosquitto)
    try:
        backend.start()  # ready once ingest has subscribed
        api = backend.url
        deadline = time.monotonic() + 10
        while httpx.get(f"{api}/healthz").status_code != 200:  # 503 until both MQTT links are up
            assert time.monotonic() < deadline, httpx.get(f"{api}/healthz").text
            time.sleep(0.05)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        provisioned = httpx.put(f"{api}/fleets/{FLEET}/vehicles/{VIN}", headers=auth)
        assert provisioned.status_code == 201
        created = httpx.post(
            f"{api}/vehicles/{VIN}/monitors", json=monitor_definition(rx.url), headers=auth
        )
        assert created.status_code == 202
        mid = created.json()["monitorId"]
        deadline = time.monotonic() + 10
        publish(client, Topics().events(VIN), event_to_json(make_event(mid)))
        (request,) = rx.wait_for(1)
        assert Webhook(SECRET).verify(request.body, request.headers)["monitorId"] == mid
        while True:  # the result is recorded within a poll interval
            metrics = httpx.get(f"{api}/metrics").text
            if _metric(metrics, "edgemon_ingest_to_delivery_seconds_count") == 1:
                break
            assert time.monotonic() < deadline + 10, "delivery never recorded"
            time.sleep(0.05)
        assert _metric(metrics, "edgemon_events_ingested_total") == 1
        assert 'edgemon_deliveries_total{outcome="delivered"} 1.0' in metrics
        history = httpx.get(f"{api}/monitors/{mid}/deliveries", headers=auth).json()
        assert history["_embedded"]["deliveries"][0]["state"] == "delivered"
    finally:
        stop_network_loop(client)
        client.disconnect()
        code = backend.stop()
    assert code == 0, backend.log()[-2000:]
