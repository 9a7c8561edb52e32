"""The backend process killed with SIGKILL between receipt and commit: the broker redelivers
the unacknowledged event to the restarted process and the webhook goes out exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    SECRET,
    VIN,
    add_monitor,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, broker: Mosquitto, ca: CertAuthority) -> Path:
    path = tmp_path / "backend.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "backend.db"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "crash-test"\n'
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{ca.ca_file}"\n'
        'allow_networks = ["127.0.0.0/8"]\n'
        "[dispatcher]\npoll_interval = 0.05\n"
    )
    return path


def _start(config: Path, log: Path, hold_marker: Path | None = None) -> subprocess.Popen[bytes]:
    """``edgemon-backend run`` (ingest + dispatcher); with ``hold_marker``, the same composition
    whose ingest blocks before its first commit (tests/backend/held_backend.py)."""
    if hold_marker is None:
        args = ["backend", "run", "-c", str(config), "--role", "ingest", "--role", "dispatcher"]
    else:
        args = ["tests.backend.held_backend", str(config), str(hold_marker)]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_sigkill_between_receipt_and_commit_loses_nothing_and_sends_once(
    tmp_path: Path,
    mosquitto: Mosquitto,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers()
    store = SqliteStore(tmp_path / "backend.db")
    mid = add_monitor(store, monitor_definition(rx.url))
    config = _config(tmp_path, mosquitto, test_ca)
    log = tmp_path / "backend.log"
    marker = tmp_path / "received"
    first = _start(config, log, marker)
    client = publisher(mosquitto)
    second = None
    try:
        _wait(lambda: "ingest subscribed" in log.read_text(), "first backend subscribed")
        event = make_event(mid, value="once")
        publish(client, Topics().events(VIN), event_to_json(event))
        _wait(marker.exists, "the event reached ingest")
        first.send_signal(signal.SIGKILL)  # received, not committed, not acknowledged
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        assert store.deliveries(mid, None, 0, 5)[1] == 0  # nothing was committed

        second = _start(config, log)
        requests = rx.wait_for(1)
        publish(client, Topics().events(VIN), event_to_json(make_event(mid, value="sentinel")))
        requests = rx.wait_for(2)
        literals = [
            json.loads(r.body)["events"][0]["values"][0]["value"]["body"]["literalValue"]
            for r in requests
        ]
        assert literals == ["once", "sentinel"]
        _wait(lambda: store.deliveries(mid, "delivered", 0, 5)[1] == 2, "both recorded")
        assert len(rx.requests) == 2
    finally:
        stop_network_loop(client)
        client.disconnect()
        _stop(first)
        if second is not None:
            _stop(second)
        store.close()
