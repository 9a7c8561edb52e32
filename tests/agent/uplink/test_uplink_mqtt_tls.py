"""mTLS: mosquitto with a TLS listener that requires client certificates from a test CA."""

from __future__ import annotations

import logging
import os
import queue
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from agent.config import MqttConfig
from agent.errors import ConfigError
from agent.uplink.mqtt import Connected, ConnectFailed, LinkEvent, MqttLink
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def tls_broker(tmp_path: Path) -> tuple[Mosquitto, trustme.CA, Path]:
    ca = trustme.CA()
    certs = tmp_path / "certs"
    certs.mkdir()
    ca.cert_pem.write_to_path(certs / "ca.pem")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(certs / "server.key")
    server.cert_chain_pems[0].write_to_path(certs / "server.pem")
    broker = Mosquitto(
        tmp_path / "broker",
        extra_conf="\n".join(
            [
                f"cafile {certs / 'ca.pem'}",
                f"certfile {certs / 'server.pem'}",
                f"keyfile {certs / 'server.key'}",
                "require_certificate true",
                "use_identity_as_username true",
                # as root, mosquitto drops to its own user, which cannot read pytest's tmp dirs
                "user root" if os.geteuid() == 0 else "",
            ]
        ),
    )
    broker.start()
    yield broker, ca, certs  # type: ignore[misc]
    broker.stop()


def _client_cert(ca: trustme.CA, certs: Path, name: str) -> tuple[Path, Path]:
    leaf = ca.issue_cert(name, common_name=name)
    leaf.private_key_pem.write_to_path(certs / f"{name}.key")
    leaf.cert_chain_pems[0].write_to_path(certs / f"{name}.pem")
    return certs / f"{name}.pem", certs / f"{name}.key"


def _wait(inbox: queue.Queue[LinkEvent], kind: type, timeout: float = 15.0) -> LinkEvent:
    deadline = time.monotonic() + timeout
    while True:
        item = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, kind):
            return item


def test_agent_connects_with_client_certificate(
    tls_broker: tuple[Mosquitto, trustme.CA, Path],
) -> None:
    broker, ca, certs = tls_broker
    cert, key = _client_cert(ca, certs, "VF3DAEMON00000001")
    config = MqttConfig(
        host=broker.host,
        port=broker.port,
        tls=True,
        ca_file=certs / "ca.pem",
        cert_file=cert,
        key_file=key,
        reconnect_min=0.1,
        reconnect_max=0.3,
    )
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(config, "car-1", inbox.put)
    link.start()
    try:
        assert isinstance(_wait(inbox, Connected), Connected)
        assert link.publish("edgemon/v1/vehicles/x/status", b"{}", retain=True) > 0
    finally:
        link.stop()


def test_wrong_ca_gives_a_clear_error_and_retries(
    tls_broker: tuple[Mosquitto, trustme.CA, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broker, ca, certs = tls_broker
    cert, key = _client_cert(ca, certs, "car-2")
    other = trustme.CA()
    other.cert_pem.write_to_path(certs / "other-ca.pem")
    config = MqttConfig(
        host=broker.host,
        port=broker.port,
        tls=True,
        ca_file=certs / "other-ca.pem",
        cert_file=cert,
        key_file=key,
        reconnect_min=0.05,
        reconnect_max=0.1,
    )
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(config, "car-2", inbox.put)
    with caplog.at_level(logging.ERROR, logger="agent.uplink.mqtt"):
        link.start()
        try:
            first = _wait(inbox, ConnectFailed)
            second = _wait(inbox, ConnectFailed)
        finally:
            link.stop()
    assert isinstance(first, ConnectFailed) and isinstance(second, ConnectFailed)
    assert "not trusted" in first.reason and "mqtt.ca_file" in first.reason
    assert link.counters["connect_failures"] >= 2
    assert any("not trusted" in r.getMessage() for r in caplog.records)


def test_client_without_certificate_is_refused_and_retries(
    tls_broker: tuple[Mosquitto, trustme.CA, Path],
) -> None:
    broker, _, certs = tls_broker
    config = MqttConfig(
        host=broker.host,
        port=broker.port,
        tls=True,
        ca_file=certs / "ca.pem",
        reconnect_min=0.05,
        reconnect_max=0.1,
    )
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(config, "car-3", inbox.put)
    link.start()
    try:
        first = _wait(inbox, ConnectFailed)
        _wait(inbox, ConnectFailed)
    finally:
        link.stop()
    assert isinstance(first, ConnectFailed) and "before CONNACK" in first.reason
    assert link.counters["connects"] == 0 and link.counters["connect_failures"] >= 2


def test_unreadable_client_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    config = MqttConfig(tls=True, cert_file=tmp_path / "cert.pem", key_file=tmp_path / "cert.pem")
    with pytest.raises(ConfigError, match="client certificate"):
        MqttLink(config, "x", lambda _e: None)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_username_password_over_server_tls(tmp_path: Path, protocol: str) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    server = ca.issue_cert("127.0.0.1")
    server.private_key_pem.write_to_path(tmp_path / "server.key")
    server.cert_chain_pems[0].write_to_path(tmp_path / "server.pem")
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "car", "s3cret"], check=True)
    broker = Mosquitto(
        tmp_path / "broker",
        extra_conf="\n".join(
            [
                f"certfile {tmp_path / 'server.pem'}",
                f"keyfile {tmp_path / 'server.key'}",
                "allow_anonymous false",
                f"password_file {passwords}",
                "user root" if os.geteuid() == 0 else "",
            ]
        ),
    ).start()
    try:
        good = MqttConfig(
            host=broker.host,
            port=broker.port,
            tls=True,
            ca_file=tmp_path / "ca.pem",
            username="car",
            password="s3cret",
            protocol=protocol,
        )
        inbox: queue.Queue[LinkEvent] = queue.Queue()
        link = MqttLink(good, "car-pw", inbox.put)
        link.start()
        try:
            assert isinstance(_wait(inbox, Connected), Connected)
        finally:
            link.stop()
        bad = MqttConfig(
            host=broker.host,
            port=broker.port,
            tls=True,
            ca_file=tmp_path / "ca.pem",
            username="car",
            password="wrong",
            protocol=protocol,
            reconnect_min=0.05,
            reconnect_max=0.1,
        )
        inbox = queue.Queue()
        link = MqttLink(bad, "car-pw2", inbox.put)
        link.start()
        try:
            refused = _wait(inbox, ConnectFailed)
        finally:
            link.stop()
        assert isinstance(refused, ConnectFailed) and "refused" in refused.reason
    finally:
        broker.stop()


def test_a_broker_that_never_answers_connect_is_left_and_retried() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        config = MqttConfig(port=port, connack_timeout=0.3, reconnect_min=0.05, reconnect_max=0.1)
        inbox: queue.Queue[LinkEvent] = queue.Queue()
        link = MqttLink(config, "car-silent", inbox.put)
        link.start()
        try:
            first = _wait(inbox, ConnectFailed)
            _wait(inbox, ConnectFailed)
        finally:
            link.stop()
    assert isinstance(first, ConnectFailed) and "no CONNACK" in first.reason
