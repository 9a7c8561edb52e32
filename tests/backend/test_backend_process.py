"""The whole backend as one process (`edgemon-backend run`, every role): API -> retained monitor,
MQTT event -> signed webhook, /metrics counts it, SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
from tests.support.mosquitto import Mosquitto, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


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
    port = free_port()
    config = tmp_path / "backend.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "backend.db"}"\n'
        f'[api]\nport = {port}\n[[api.tokens]]\ntoken = "{TOKEN}"\n'
        'scopes = ["monitors:read", "monitors:write", "deliveries:read", "admin"]\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "whole"\n'
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{test_ca.ca_file}"\n'
        'allow_networks = ["127.0.0.0/8"]\n'
        "[dispatcher]\npoll_interval = 0.05\n"
    )
    log = (tmp_path / "backend.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend", "run", "-c", str(config)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = publisher(mosquitto)
    try:
        wait_for_port("127.0.0.1", port)
        api = f"http://127.0.0.1:{port}"
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
        while "ingest subscribed" not in (tmp_path / "backend.log").read_text():
            assert time.monotonic() < deadline, "ingest never subscribed"
            time.sleep(0.05)
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
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            code = None
        log.close()
    assert code == 0, (tmp_path / "backend.log").read_text()[-2000:]
