"""The consumers of docs/mqtt.md, run as written (issue 18): the fenced blocks marked
``<!-- tested: consumer-... -->`` are taken from the document, the broker's host, port, CA file
and the password are replaced by those of a real mosquitto started from the shipped
configuration (deploy/mosquitto/, the ACL generated from the shipped example fleet file), and
each must print the events a vehicle publishes."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from scripts.broker import TlsBroker
from scripts.broker_config import ROOT, load_access
from scripts.pki import Pki, make_pki
from tests.backend.conftest import make_event

DOC = ROOT / "docs" / "mqtt.md"
FLEET_FILE = ROOT / "deploy" / "mosquitto" / "fleet.example.toml"
VIN = "VF3ABCDEF12345678"  # in the example fleet file
PASSWORD = "secret"  # the document's own placeholder: nothing to replace
_BLOCK = re.compile(
    r"<!-- tested: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.S
)


def documented_blocks() -> dict[str, str]:
    return {m["name"]: m["body"] for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


@dataclass
class Setup:
    broker: TlsBroker
    pki: Pki

    def localized(self, text: str) -> str:
        """The document's placeholders replaced by the test broker's values, nothing else."""
        port = str(self.broker.port)
        text = text.replace("broker.example.com", self.broker.host)
        text = text.replace("-p 8884", f"-p {port}").replace(", 8884)", f", {port})")
        return text.replace("ca.pem", str(self.pki.ca_file))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("docs-consumer")
    pki = make_pki(folder / "pki")
    passwords = {"backend": "backend-password", "consumer": PASSWORD, VIN: "vehicle-password"}
    broker = TlsBroker(folder / "broker", pki, load_access(FLEET_FILE), passwords).start()
    try:
        yield Setup(broker, pki)
    finally:
        broker.stop()


def _vehicle(setup: Setup) -> mqtt.Client:
    """The vehicle, logged in with a password on the service listener (its own ACL block)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=VIN, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(setup.pki.ca_file))
    client.username_pw_set(VIN, "vehicle-password")
    client.connect(setup.broker.host, setup.broker.port)
    client.loop_start()
    return client


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _receive(setup: Setup, argv: list[str]) -> tuple[str, str]:
    """Start a documented consumer, publish events as the vehicle until it prints one (it may
    not have subscribed yet), stop it by its PID; (the line, the event id published)."""
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    vehicle = _vehicle(setup)
    sent: list[str] = []
    try:
        lines = _lines(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = make_event("01a3185c-5000-7d4a-a497-deec9c00c01a", vin=VIN, at=time.time())
            sent.append(event.event_id)
            info = vehicle.publish(Topics().events(VIN), event_to_json(event), qos=1)
            info.wait_for_publish(10)
            try:
                return lines.get(timeout=0.5), sent[-1]
            except queue.Empty:
                assert proc.poll() is None, f"the consumer ended: {proc.returncode}"
        raise AssertionError("the documented consumer printed nothing")
    finally:
        stop_network_loop(vehicle)
        vehicle.disconnect()
        proc.kill()
        proc.wait(10)


def test_the_documented_blocks_are_found() -> None:
    blocks = documented_blocks()
    assert set(blocks) == {"consumer-sh", "consumer-python"}
    assert "-u consumer -P secret" in blocks["consumer-sh"]
    # the account the documents name is the consumer account of the shipped fleet file
    assert load_access(FLEET_FILE).consumers == ("consumer",)


def test_the_documented_mosquitto_sub_receives_events(setup: Setup) -> None:
    command = setup.localized(documented_blocks()["consumer-sh"])
    line, _ = _receive(setup, ["bash", "-c", "exec " + command])
    topic, _, payload = line.rstrip("\n").partition(" ")
    assert topic == Topics().events(VIN)
    event = json.loads(payload)
    assert event["vin"] == VIN and event["schema"] == "edgemon.event/1"


def test_the_documented_python_consumer_validates_and_prints_events(setup: Setup) -> None:
    script = setup.localized(documented_blocks()["consumer-python"])
    line, _ = _receive(setup, [sys.executable, "-c", script])
    assert line.startswith(f"{VIN} 01a3185c-5000-7d4a-a497-deec9c00c01a "), line
