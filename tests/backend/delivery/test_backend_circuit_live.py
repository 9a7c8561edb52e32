"""Delivery at scale against real processes (issue 15): mosquitto, one ``edgemon-backend run``
process with its real sender, two HTTPS receivers (trustme).

One endpoint hangs (it never answers within the attempt's deadline) for five customers'
monitors with ``Always`` retries one second apart; another endpoint is healthy. The healthy one
gets every event while the hanging one holds nothing; once its circuit is open the hanging one
sees probes only (one request per failed probe, each counted as a change to ``open`` in
/metrics), never the retries of five monitors; when it answers again, a probe closes the circuit
and everything held is delivered, each request being an attempt in the history (none spent
while the circuit was open). Nothing here asserts on time: waits poll for states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from tests.backend.backend_receiver import CertAuthority, Receiver, Reply
from tests.backend.conftest import (
    TOKEN,
    VIN,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HANG_GUARD = 60.0  # a regression fails instead of hanging; no assertion on time
FAILURES, CONCURRENCY = 3, 2


@pytest.fixture
def backend(tmp_path: Path, mosquitto: Mosquitto, test_ca: CertAuthority) -> Iterator[str]:
    config = write_backend_config(
        tmp_path,
        mosquitto,
        client_id="circuit",
        ca=test_ca,
        webhooks={
            "timeout": 1.0,
            "connect_timeout": 1.0,
            "per_endpoint_concurrency": CONCURRENCY,
            "breaker_failures": FAILURES,
            "breaker_cooldown": 0.5,
            "breaker_max_cooldown": 1.0,
        },
    )
    with BackendProcess(config, ready_timeout=HANG_GUARD, stop_timeout=15) as backend:
        yield backend.url


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _metric(api: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in httpx.get(f"{api}/metrics").text.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _opens(api: str) -> float:
    return _metric(api, "edgemon_endpoint_circuit_changes_total", 'state="open"')


def _monitor(api: str, target: str, **kw: object) -> str:
    created = httpx.post(
        f"{api}/vehicles/{VIN}/monitors", json=monitor_definition(target, **kw), headers=AUTH
    )
    assert created.status_code == 202, created.text
    return str(created.json()["monitorId"])


def _deliveries(api: str, monitor_id: str) -> list[dict[str, object]]:
    page = httpx.get(f"{api}/monitors/{monitor_id}/deliveries", headers=AUTH).json()
    found: list[dict[str, object]] = page["_embedded"]["deliveries"]
    return found


def test_a_hanging_endpoint_gets_probes_only_and_holds_no_worker(
    backend: str, mosquitto: Mosquitto, receivers: Callable[..., Receiver], tmp_path: Path
) -> None:
    api = backend
    hanging, healthy = receivers(), receivers()
    hanging.respond = lambda _r: Reply(200, delay=30)  # past every attempt's 1 s deadline
    assert httpx.put(f"{api}/fleets/fleet-1/vehicles/{VIN}", headers=AUTH).status_code == 201
    stuck = [
        _monitor(api, hanging.url + f"/c{i}", policy="Always", retry_delay=1) for i in range(5)
    ]
    fine = _monitor(api, healthy.url + "/ok")
    client = publisher(mosquitto)
    try:
        for i, mid in enumerate(stuck * 2):  # ten deliveries, two per customer
            publish(
                client, Topics().events(VIN), event_to_json(make_event(mid, value=str(140 + i)))
            )
        _until(lambda: _opens(api) >= 1, "the circuit never opened")
        for i in range(20):
            event = make_event(fine, at=time.time() + i / 1000, value=str(131 + i))
            publish(client, Topics().events(VIN), event_to_json(event))
        healthy.wait_for(20, HANG_GUARD)  # delivered while the other endpoint hangs
        _until(lambda: _opens(api) >= 3, "no failed probe")  # two probes failed meanwhile

        seen = len(hanging.requests)
        opens = _opens(api)  # read after: a probe may have started in between
        # before the circuit opened: the failures that opened it and those already in flight;
        # after: one request per probe (each failed one re-opened it), one more may be out
        assert seen <= (FAILURES + CONCURRENCY - 1) + (opens - 1) + 1
        circuits = 'edgemon_endpoint_circuit{endpoint="https://127.0.0.1:'
        assert _metric(api, circuits + str(hanging.port)) == 1
        assert _metric(api, circuits + str(healthy.port)) == 0

        hanging.respond = lambda _r: Reply(200)  # back: a probe closes the circuit
        _until(
            lambda: all(d["state"] == "delivered" for m in stuck for d in _deliveries(api, m)),
            "the held deliveries were not delivered after the endpoint came back",
        )
    finally:
        stop_network_loop(client)
    held = [d for m in stuck for d in _deliveries(api, m)]
    assert len(held) == 10
    attempts = sum(len(d["attempts"]) for d in held)  # type: ignore[arg-type]
    assert attempts == len(hanging.requests)  # each request an attempt, none without one
    assert _metric(api, "edgemon_endpoint_circuits", 'state="open"') == 0
    assert _metric(api, "edgemon_endpoint_circuit_changes_total", 'state="closed"') == 1
    log = (tmp_path / "backend.log").read_text()
    assert log.count("circuit open after") == 1 and log.count("circuit closed") == 1
