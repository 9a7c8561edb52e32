"""The logs tell the story: startup summary, each event committed and acknowledged, connection
changes, and no certificate guess for a plain-TCP broker that closes before CONNACK."""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from agent.config import MqttConfig
from agent.story import acked_line, listed, payload_about
from agent.uplink.mqtt import ConnectFailed, LinkEvent, MqttLink
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, Collector, oil_monitor
from tests.agent.daemon.test_daemon_app import Running, running  # noqa: F401 - the fixture
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_startup_summary_and_each_event_committed_then_acknowledged(
    running: Callable[..., Running],  # noqa: F811 - the fixture imported above
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    caplog.set_level(logging.INFO)
    agent = running([oil_monitor("120", id="oil-story")])
    agent.send_oil(100, 130, 100, 131)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 2)
    deadline = time.monotonic() + 20
    while not any("event seq 2 acknowledged" in m for m in _messages(caplog)):
        assert time.monotonic() < deadline, "the second acknowledgement was not logged"
        time.sleep(0.05)
    assert agent.stop() == 0
    logged = _messages(caplog)
    text = "\n".join(logged)
    # the summary: VIN, bus with its DBC set, the signals in use, monitors, clock
    assert f"agent up: vin {VIN}, fleet fleet-1, 1 bus(es), 1 monitor(s)" in text
    assert "(plain TCP)" in text
    bus_line = next(m for m in logged if m.startswith("bus can0: virtual "))
    assert "DBC " in bus_line and "demo_vehicle.dbc" in bus_line
    assert "signal map " in bus_line and "demo_vehicle.map.toml" in bus_line
    assert "signals in use: 1: vehicle.engines.thermic.oil.temp" in logged
    assert "monitors: oil-story 'oil above 120'; local file " in text
    assert any(m.startswith("clock: policy auto, source ") for m in logged)
    assert f"MQTT: connected to 127.0.0.1:{mosquitto.port}" in logged
    opened = [m for m in logged if m.startswith("CAN bus can0: virtual edgemon-")]
    assert len(opened) == 1 and opened[0].endswith(" open")
    # each event, committed then acknowledged, tied by its sequence number
    for seq in (1, 2):
        committed = [m for m in logged if m.startswith(f"event seq {seq} committed: ")]
        acked = [m for m in logged if m.startswith(f"event seq {seq} acknowledged by the broker")]
        assert len(committed) == 1 and len(acked) == 1
        assert "monitor oil-story 'oil above 120', new, id " in committed[0]
        assert "monitor oil-story, new, id " in acked[0]
        assert committed[0].split(" id ")[-1] == acked[0].split(" id ")[-1]
        assert logged.index(committed[0]) < logged.index(acked[0])


@pytest.fixture
def closing_server() -> Iterator[Callable[[ssl.SSLContext | None], int]]:
    """A TCP (or TLS) server on loopback that accepts, finishes any handshake and closes: the
    broker that drops a connection before CONNACK."""
    servers: list[socket.socket] = []
    stop = threading.Event()

    def serve(listener: socket.socket, context: ssl.SSLContext | None) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                if context is not None:
                    conn.settimeout(5)
                    conn = context.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                pass
            conn.close()

    def start(context: ssl.SSLContext | None) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)
        threading.Thread(target=serve, args=(listener, context), daemon=True).start()
        return int(listener.getsockname()[1])

    yield start
    stop.set()
    for listener in servers:
        listener.close()


def _first_failure(config: MqttConfig) -> str:
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(config, "car-story", inbox.put)
    link.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            item = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, ConnectFailed):
                return item.reason
    finally:
        link.stop()


def test_plain_tcp_close_before_connack_names_no_certificate_and_is_a_warning(
    closing_server: Callable[[ssl.SSLContext | None], int], caplog: pytest.LogCaptureFixture
) -> None:
    port = closing_server(None)
    config = MqttConfig(port=port, reconnect_min=0.05, reconnect_max=0.1, connack_timeout=2.0)
    with caplog.at_level(logging.INFO, logger="agent.uplink.mqtt"):
        reason = _first_failure(config)
    assert f"127.0.0.1:{port}" in reason and "CONNACK" in reason
    assert "certificate" not in reason
    lines = [r for r in caplog.records if "CONNACK" in r.getMessage()]
    assert lines and all(r.levelno == logging.WARNING for r in lines)
    assert all("certificate" not in r.getMessage() for r in caplog.records)


def test_tls_with_client_certificate_close_before_connack_suggests_the_certificate(
    closing_server: Callable[[ssl.SSLContext | None], int],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    port = closing_server(server_context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("car-story")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    config = MqttConfig(
        port=port,
        tls=True,
        ca_file=tmp_path / "ca.pem",
        cert_file=tmp_path / "client.pem",
        key_file=tmp_path / "client.key",
        reconnect_min=0.05,
        reconnect_max=0.1,
        connack_timeout=2.0,
    )
    with caplog.at_level(logging.INFO, logger="agent.uplink.mqtt"):
        reason = _first_failure(config)
    assert "closed before CONNACK (client certificate refused?)" in reason
    assert any(
        r.levelno == logging.ERROR and "client certificate refused?" in r.getMessage()
        for r in caplog.records
    )


def test_story_helpers_on_odd_input() -> None:
    assert listed([]) == "none"
    assert listed([f"s{i:02d}" for i in range(15)], limit=3) == "s00, s01, s02 ... and 12 more"
    assert payload_about(b"\xff not json") == (None, None)
    assert payload_about(b"[1, 2]") == (None, None)
    assert payload_about(b'{"monitorId": 7, "refresh": "yes"}') == (None, None)
    assert payload_about(b'{"monitorId": "m", "refresh": true}') == ("m", True)
    assert acked_line(3, "e", None, None) == (
        "event seq 3 acknowledged by the broker: monitor ?, id e"
    )
