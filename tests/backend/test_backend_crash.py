"""The backend process killed with SIGKILL between receipt and commit: the broker redelivers
the unacknowledged event to the restarted process and the webhook goes out exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    VIN,
    add_monitor,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_sigkill_between_receipt_and_commit_loses_nothing_and_sends_once(
    tmp_path: Path,
    mosquitto: Mosquitto,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers()
    store = SqliteStore(tmp_path / "backend.db")
    mid = add_monitor(store, monitor_definition(rx.url))
    config = write_backend_config(
        tmp_path, mosquitto, client_id="crash-test", ca=test_ca, api=False
    )
    marker = tmp_path / "received"
    # `backend run --role ingest --role dispatcher`, the first one with its ingest blocking
    # before its first commit (tests/backend/held_backend.py)
    first = BackendProcess(
        config, module=["tests.backend.held_backend", str(config.path), str(marker)]
    )
    second = BackendProcess(config, roles=["ingest", "dispatcher"], stop_timeout=10)
    client = publisher(mosquitto)
    try:
        first.start()  # ready once ingest has subscribed
        event = make_event(mid, value="once")
        publish(client, Topics().events(VIN), event_to_json(event))
        _wait(marker.exists, "the event reached ingest")
        assert first.kill() == -signal.SIGKILL  # received, not committed, not acknowledged
        assert store.deliveries(mid, None, 0, 5)[1] == 0  # nothing was committed

        second.start()
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
        first.stop()
        second.stop()
        store.close()
