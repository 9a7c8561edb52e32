"""Issue 12 acceptance for hostile webhook endpoints, against a real backend process
(`edgemon-backend run`: API, ingest and dispatcher with its real sender)
and a real mosquitto:

(a) an endpoint streaming an endless body: every delivery is recorded and the process RSS, read
    from /proc while it happens, stays bounded;
(b) an endpoint dripping a byte at a time: the attempt is recorded failed, "timed out";
(c) SSRF targets: literal forbidden addresses are refused by the API (400); a name resolving to
    a loopback address outside ``allow_networks`` is refused when delivering, and the loopback
    listener behind it sees no connection.

The backend allowlists only 127.0.0.2/32, where the hostile endpoints listen; the SSRF listener
is on 127.0.0.1.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from backend.delivery.webhooks import POLICY_REFUSED, TIMED_OUT
from tests.backend.backend_receiver import CertAuthority
from tests.backend.conftest import (
    FLEET,
    TOKEN,
    VIN,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.backend.hostile_endpoint import HostileEndpoint, drip, endless_body, raw
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto

AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALLOWED_HOST = "127.0.0.2"
RSS_BOUND = 300 * 1024 * 1024
HANG_GUARD = 90.0  # a regression fails instead of hanging; no assertion on time


@dataclass
class RunningBackend:
    process: BackendProcess
    api: str
    mqtt: mqtt.Client
    ca: CertAuthority

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def create(self, target: str) -> httpx.Response:
        definition = monitor_definition(target, policy="None")
        return httpx.post(f"{self.api}/vehicles/{VIN}/monitors", json=definition, headers=AUTH)

    def fire(self, monitor_id: str, count: int = 1) -> None:
        for i in range(count):
            event = make_event(monitor_id, at=time.time() + i * 0.001, value=str(131 + i))
            publish(self.mqtt, Topics().events(VIN), event_to_json(event))

    def deliveries(self, monitor_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.api}/monitors/{monitor_id}/deliveries", headers=AUTH)
        assert answer.status_code == 200
        found: list[dict[str, Any]] = answer.json()["_embedded"]["deliveries"]
        return found


@pytest.fixture(scope="module", params=["aiohttp"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningBackend]:
    work = tmp_path_factory.mktemp(f"hostile-{request.param}")
    ca = CertAuthority.create(work)
    broker = Mosquitto(work / "broker")
    broker.start()
    config = write_backend_config(
        work,
        broker,
        client_id=f"hostile-{request.param}",
        ca=ca,
        allow_networks=[f"{ALLOWED_HOST}/32"],
        webhooks={"client": request.param, "timeout": 2.0, "connect_timeout": 2.0},
    )
    process = BackendProcess(config, ready_timeout=HANG_GUARD, stop_timeout=15)
    client = publisher(broker)
    try:
        process.start()
        provisioned = httpx.put(f"{process.url}/fleets/{FLEET}/vehicles/{VIN}", headers=AUTH)
        assert provisioned.status_code == 201  # events are routed by the vehicle's fleet
        yield RunningBackend(process, process.url, client, ca)
    finally:
        stop_network_loop(client)
        client.disconnect()
        process.stop()
        broker.stop()


def _wait(done: Any, message: str) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not done():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _allowed_endpoint(ca: CertAuthority, answer: Any) -> HostileEndpoint:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.ca.issue_cert(ALLOWED_HOST).configure_cert(context)
    return HostileEndpoint(answer, context, host=ALLOWED_HOST).start()


def test_an_endless_body_leaves_memory_bounded(backend: RunningBackend) -> None:
    endpoint = _allowed_endpoint(backend.ca, endless_body)
    try:
        created = backend.create(endpoint.url + "/hook")
        assert created.status_code == 202, created.text
        mid = created.json()["monitorId"]
        backend.fire(mid, count=4)  # four endless answers at once
        peak = 0

        def recorded() -> bool:
            nonlocal peak
            peak = max(peak, backend.rss())
            assert peak < RSS_BOUND, f"backend RSS reached {peak / 2**20:.0f} MiB"
            views = backend.deliveries(mid)
            return len(views) == 4 and all(v["attempts"] for v in views)

        _wait(recorded, "the deliveries were never recorded")
        for view in backend.deliveries(mid):
            assert view["state"] == "delivered", view
            assert view["attempts"][0]["statusCode"] == 200
        assert endpoint.connections == 4
        _wait(lambda: len(endpoint.cut_after) == 4, "the backend never hung up")
        assert peak < RSS_BOUND and backend.process.running()
    finally:
        endpoint.stop()


def test_a_dripping_endpoint_fails_at_the_deadline(backend: RunningBackend) -> None:
    endpoint = _allowed_endpoint(backend.ca, drip(every=0.3))
    try:
        mid = backend.create(endpoint.url + "/hook").json()["monitorId"]
        backend.fire(mid)
        _wait(lambda: any(v["attempts"] for v in backend.deliveries(mid)), "no attempt recorded")
        (view,) = backend.deliveries(mid)
        (attempt,) = view["attempts"]
        assert attempt["outcome"] == "failed" and attempt["error"] == TIMED_OUT
        assert view["state"] == "pending"  # policy None: its one retry is still to come
    finally:
        endpoint.stop()


def test_ssrf_targets_are_refused_and_nothing_connects(backend: RunningBackend) -> None:
    listener = HostileEndpoint(
        raw(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), backend.ca.server_context()
    ).start()
    try:
        port = listener.port
        for literal in (
            f"https://127.0.0.1:{port}/hook",
            f"https://[::1]:{port}/hook",
            "https://169.254.169.254/latest/meta-data/iam",
            f"https://2130706433:{port}/hook",
        ):
            refused = backend.create(literal)
            assert refused.status_code == 400, literal
            paths = [p["path"] for p in refused.json()["problems"]]
            assert paths == ["$.subscribeParam.callback.webhook.target"], literal
        created = backend.create(f"https://localhost:{port}/hook")  # a name: checked at connect
        assert created.status_code == 202
        mid = created.json()["monitorId"]
        backend.fire(mid)
        _wait(lambda: any(v["attempts"] for v in backend.deliveries(mid)), "no attempt recorded")
        (view,) = backend.deliveries(mid)
        assert view["state"] == "dead"  # refused: not retried
        assert [a["error"] for a in view["attempts"]] == [POLICY_REFUSED]
        assert listener.connections == 0
        assert httpx.get(f"{backend.api}/healthz").status_code == 200
    finally:
        listener.stop()
