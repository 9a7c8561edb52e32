"""The shipped broker configuration (deploy/mosquitto/) on a real mosquitto: TLS, vehicles by
client certificate (CN = VIN), services by password, the ACL generated from the shipped example
fleet file. Issue 12, finding 3: a vehicle reads only its own and its own fleet's monitors, and
publishes only under its own VIN.

Absence is shown without waiting for a timeout: each probe ends with a sentinel that the same
client may send or receive, and mosquitto keeps one publisher's order (and sends the retained
messages of a subscription right after its SUBACK), so whatever was not seen before the sentinel
was never going to arrive.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from scripts.broker import TlsBroker
from scripts.broker_config import ROOT, BrokerAccess, load_access
from scripts.pki import Pki, make_pki
from scripts.vehicle_cert import issue, load_ca
from tests.deploy.mqtt_client import OK, Client, Message, Refused

FLEET_FILE = ROOT / "deploy" / "mosquitto" / "fleet.example.toml"
P = "edgemon/v1"
A = "VF3ABCDEF12345678"  # fleet-north
A2 = "VF3ABCDEF87654321"  # fleet-north too
B = "VR1AAAAAA00000001"  # fleet-south
UNLISTED = "VF3ZZZZZZ00000009"  # a valid certificate, not in the fleet file
GRANTED, NOT_AUTHORIZED = 1, 135
SENTINEL = 99  # the subscription identifier of the last subscription of a probe


@dataclass
class Deployed:
    broker: TlsBroker
    pki: Pki
    certs: dict[str, tuple[Path, Path]]
    passwords: dict[str, str]

    def vehicle(self, vin: str, protocol: int = mqtt.MQTTv5) -> Client:
        return Client(
            self.broker.cert_port, self.pki.ca_file, cert=self.certs[vin], protocol=protocol
        )

    def service(self, name: str) -> Client:
        return Client(
            self.broker.port, self.pki.ca_file, username=name, password=self.passwords[name]
        )


def _certificates(pki: Pki, vins: list[str], folder: Path) -> dict[str, tuple[Path, Path]]:
    ca_cert, ca_key = load_ca(pki.ca_file.read_bytes(), pki.ca_key_file.read_bytes())
    certs = {}
    for vin in vins:
        issued = issue(ca_cert, ca_key, vin, now=datetime.now(UTC))
        assert issued.private_key is not None
        (folder / f"{vin}.pem").write_bytes(issued.certificate)
        (folder / f"{vin}.key").write_bytes(issued.private_key)
        certs[vin] = (folder / f"{vin}.pem", folder / f"{vin}.key")
    return certs


def _deploy(folder: Path, access: BrokerAccess | None = None) -> Deployed:
    pki = make_pki(folder / "pki")
    passwords = {"backend": secrets.token_hex(8), "consumer": secrets.token_hex(8)}
    access = access or load_access(FLEET_FILE)
    broker = TlsBroker(folder / "broker", pki, access, passwords)
    certs = _certificates(pki, [A, A2, B, UNLISTED], folder / "pki")
    return Deployed(broker, pki, certs, passwords)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    setup = _deploy(tmp_path_factory.mktemp("shipped-broker"))
    with setup.broker:
        backend = setup.service("backend")
        for topic in (  # what the backend pushes: retained definitions
            f"{P}/vehicles/{A}/monitors/own-a",
            f"{P}/vehicles/{B}/monitors/own-b",
            f"{P}/fleets/fleet-north/monitors/north",
            f"{P}/fleets/fleet-south/monitors/south",
        ):
            assert backend.publish(topic, b'{"id":"' + topic.encode() + b'"}', retain=True) in OK
        backend.close()
        vehicle = setup.vehicle(A)
        assert vehicle.publish(f"{P}/vehicles/{A}/status", b'{"online":true}', retain=True) in OK
        vehicle.close()
        yield setup


def test_the_shipped_files_are_what_runs(deployed: Deployed) -> None:
    conf = deployed.broker.conf_path.read_text()
    template = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf.template").read_text()
    kept = [line for line in template.splitlines() if line and "$" not in line]
    assert all(line in conf.splitlines() for line in kept)
    acl = deployed.broker.acl_file.read_text().splitlines()
    assert not [line for line in acl if line.startswith("pattern")]


def _retained_seen(client: Client, filters: list[str], sentinel: str) -> set[str]:
    """Topics of the retained messages ``client`` gets for ``filters``, subscribed in order,
    then the ``sentinel`` filter (whose own messages are left out)."""
    for ident, topic_filter in enumerate(filters, start=1):
        assert client.subscribe(topic_filter, ident) == GRANTED
    client.subscribe(sentinel, SENTINEL)
    got = client.receive_until(ident=SENTINEL)
    return {m.topic for m in got if SENTINEL not in m.subscriptions}


READABLE_BY_A = {f"{P}/vehicles/{A}/monitors/own-a", f"{P}/fleets/fleet-north/monitors/north"}


@pytest.mark.parametrize(
    "topic_filter",
    [f"{P}/vehicles/{B}/monitors/+", f"{P}/fleets/fleet-south/monitors/+",
     f"{P}/fleets/+/monitors/+", f"{P}/vehicles/+/monitors/+", f"{P}/#", "#"],
)  # fmt: skip
def test_a_vehicle_never_gets_another_vehicles_or_fleets_monitors(
    deployed: Deployed, topic_filter: str
) -> None:
    """mosquitto grants the subscription but delivers only what the ACL lets A read."""
    vehicle = deployed.vehicle(A)
    try:
        seen = _retained_seen(vehicle, [topic_filter], f"{P}/vehicles/{A}/monitors/own-a")
    finally:
        vehicle.close()
    assert seen <= READABLE_BY_A
    if topic_filter in (f"{P}/#", "#"):
        assert seen == READABLE_BY_A  # the filter works: what A may read does come


def test_a_vehicle_reads_its_own_and_its_fleets_monitors(deployed: Deployed) -> None:
    vehicle = deployed.vehicle(A)
    try:
        seen = _retained_seen(
            vehicle,
            [f"{P}/fleets/fleet-north/monitors/+", f"{P}/vehicles/{A}/monitors/+", f"{P}/#"],
            f"{P}/vehicles/{A}/monitors/own-a",
        )
        assert seen == READABLE_BY_A
        # live too: the backend publishes B's and the south fleet's, then one of A's
        backend = deployed.service("backend")
        for topic in (f"{P}/vehicles/{B}/monitors/x", f"{P}/fleets/fleet-south/monitors/y"):
            assert backend.publish(topic, b"{}") in OK
        assert backend.publish(f"{P}/vehicles/{A}/monitors/live", b"{}") in OK
        backend.close()
        live = vehicle.receive_until(f"{P}/vehicles/{A}/monitors/live")
        assert {m.topic for m in live} == {f"{P}/vehicles/{A}/monitors/live"}
    finally:
        vehicle.close()


def test_a_fleet_mate_reads_the_fleet_monitors_but_not_a_mates_own(deployed: Deployed) -> None:
    mate = deployed.vehicle(A2)
    try:
        seen = _retained_seen(
            mate, [f"{P}/vehicles/{A}/monitors/+"], f"{P}/fleets/fleet-north/monitors/+"
        )
        assert seen == set()
        sentinel = f"{P}/fleets/fleet-north/monitors/north"
        assert _retained_seen(mate, [f"{P}/fleets/+/monitors/+"], sentinel) == {
            f"{P}/fleets/fleet-north/monitors/north"
        }
    finally:
        mate.close()


def _backend_sees(
    deployed: Deployed, publish_as: Client, topics: list[str], own: str
) -> list[Message]:
    """What a backend-account subscriber receives of ``topics`` then the ``own`` sentinel."""
    backend = deployed.service("backend")
    marker = secrets.token_hex(6).encode()
    try:
        assert backend.subscribe(f"{P}/#") == GRANTED
        codes = {topic: publish_as.publish(topic, marker) for topic in topics}
        assert publish_as.publish(own, marker) == 0
        got = [m for m in backend.receive_until(own) if m.payload == marker]
    finally:
        backend.close()
    accepted = {t: c for t, c in codes.items() if c != NOT_AUTHORIZED}
    assert accepted == {}, "the broker did not answer a forbidden publish with 'not authorized'"
    return got


def test_a_vehicle_publishes_only_under_its_own_vin(deployed: Deployed) -> None:
    vehicle = deployed.vehicle(A)
    forbidden = [
        f"{P}/vehicles/{B}/events",
        f"{P}/vehicles/{B}/status",
        f"{P}/vehicles/{B}/monitors/own-b/state",
        f"{P}/vehicles/{A}/monitors/own-a",  # a definition: only the backend writes those
        f"{P}/fleets/fleet-north/monitors/north",
        f"{P}/vehicles/{A}/anything",
    ]
    try:
        got = _backend_sees(deployed, vehicle, forbidden, f"{P}/vehicles/{A}/events")
        assert [m.topic for m in got] == [f"{P}/vehicles/{A}/events"]
        for own in (f"{P}/vehicles/{A}/status", f"{P}/vehicles/{A}/monitors/own-a/state"):
            assert vehicle.publish(own, b"{}") in OK  # accepted (135 if refused)
    finally:
        vehicle.close()


def test_a_vehicle_with_a_password_gets_the_same_rights(deployed: Deployed) -> None:
    """The service listener takes vehicles provisioned with a password: same ACL."""
    passwords = {**deployed.passwords, A: secrets.token_hex(8)}
    broker = deployed.broker
    broker.write_passwords(passwords)
    broker.reload()
    vehicle = _connect_when_reloaded(broker.port, deployed.pki.ca_file, A, passwords[A])
    try:
        forbidden = [f"{P}/vehicles/{B}/events"]
        got = _backend_sees(deployed, vehicle, forbidden, f"{P}/vehicles/{A}/events")
        assert [m.topic for m in got] == [f"{P}/vehicles/{A}/events"]
        seen = _retained_seen(vehicle, [f"{P}/#"], f"{P}/vehicles/{A}/monitors/own-a")
        assert seen == READABLE_BY_A
    finally:
        vehicle.close()


def _connect_when_reloaded(port: int, ca: Path, user: str, password: str) -> Client:
    deadline = time.monotonic() + 20
    while True:
        try:
            return Client(port, ca, username=user, password=password)
        except Refused:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_the_consumer_reads_events_and_status_only(deployed: Deployed) -> None:
    consumer = deployed.service("consumer")
    try:
        monitors = [f"{P}/vehicles/+/monitors/+", f"{P}/fleets/+/monitors/+"]
        assert _retained_seen(consumer, monitors, f"{P}/vehicles/+/status") == set()
        assert consumer.subscribe(f"{P}/vehicles/+/events") == GRANTED
        assert consumer.publish(f"{P}/vehicles/{A}/events", b"{}") == NOT_AUTHORIZED
        assert consumer.publish(f"{P}/fleets/fleet-north/monitors/m", b"{}") == NOT_AUTHORIZED
        vehicle = deployed.vehicle(A)
        vehicle.publish(f"{P}/vehicles/{A}/events", b'{"n":1}')
        vehicle.close()
        got = consumer.receive_until(f"{P}/vehicles/{A}/events")
        assert got[-1].payload == b'{"n":1}'
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "how",
    ["no certificate, no password", "username without password", "wrong password",
     "certificate from another CA", "vehicle certificate on the service listener"],
)  # fmt: skip
def test_an_unauthenticated_client_is_refused(deployed: Deployed, how: str, tmp_path: Path) -> None:
    broker, ca = deployed.broker, deployed.pki.ca_file
    attempts = {
        "no certificate, no password": lambda: Client(broker.cert_port, ca),
        "username without password": lambda: Client(broker.port, ca, username="backend"),
        "wrong password": lambda: Client(broker.port, ca, username="backend", password="guess"),
        "certificate from another CA": lambda: Client(
            broker.cert_port, ca, cert=_foreign_cert(tmp_path)
        ),
        "vehicle certificate on the service listener": lambda: Client(
            broker.port, ca, cert=deployed.certs[A]
        ),
    }
    with pytest.raises(Refused):
        attempts[how]().close()
    if how == "no certificate, no password":
        with pytest.raises(Refused):
            Client(broker.port, ca).close()  # the service listener: no anonymous either


def _foreign_cert(folder: Path) -> tuple[Path, Path]:
    other = make_pki(folder / "other-ca")
    return _certificates(other, [A], folder / "other-ca")[A]


def test_an_unlisted_vehicle_connects_and_may_do_nothing(deployed: Deployed) -> None:
    vehicle = deployed.vehicle(UNLISTED)
    try:
        # it reads nothing either, but with nothing readable there is no sentinel to show it
        assert vehicle.publish(f"{P}/vehicles/{UNLISTED}/events", b"{}") == NOT_AUTHORIZED
    finally:
        vehicle.close()


def test_an_oversized_publish_is_refused(deployed: Deployed) -> None:
    conf = deployed.broker.conf_path.read_text()
    setting = next(line for line in conf.splitlines() if line.startswith("max_packet_size "))
    limit = int(setting.split()[1])
    backend = deployed.service("backend")
    try:
        assert backend.subscribe(f"{P}/vehicles/{A}/events") == GRANTED
        # MQTT 3.1.1: the client is not told the limit, so it really sends the packet
        big = deployed.vehicle(A, protocol=mqtt.MQTTv311)
        big.publish_nowait(f"{P}/vehicles/{A}/events", b"x" * (limit + 1))
        assert big.disconnected.wait(20), "the broker kept a client that sent an oversized packet"
        big.close()
        small = deployed.vehicle(A)
        assert small.publish(f"{P}/vehicles/{A}/events", b"small") == 0
        small.close()
        got = backend.receive_until(f"{P}/vehicles/{A}/events")
        assert [m.payload for m in got] == [b"small"]
    finally:
        backend.close()


def test_a_revoked_certificate_is_refused_after_reload(tmp_path: Path) -> None:
    """A stolen gateway: its certificate goes on the revocation list (scripts.vehicle_crl) and
    its VIN leaves the fleet file; one SIGHUP and it can neither connect nor, on a connection
    it still holds, publish. The other vehicles carry on."""
    setup = _deploy(tmp_path)
    with setup.broker as broker:
        held = setup.vehicle(A)  # the thief's connection, open before the revocation
        argv = [sys.executable, "-m", "scripts.vehicle_crl", "--ca", str(setup.pki.ca_file)]
        argv += ["--ca-key", str(setup.pki.ca_key_file), "--crl", str(broker.crl_file)]
        argv += ["--revoke", str(setup.certs[A][0]), "-o", str(broker.crl_file)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        others = tuple((vin, fleet) for vin, fleet in broker.access.vehicles if vin != A)
        broker.write_acl(BrokerAccess(prefix=P, vehicles=others))
        broker.reload()
        deadline = time.monotonic() + 20
        while True:  # the reload is asynchronous
            try:
                setup.vehicle(A).close()
            except Refused:
                break
            assert time.monotonic() < deadline, "the revoked certificate still connects"
            time.sleep(0.1)
        assert held.publish(f"{P}/vehicles/{A}/events", b"{}") == NOT_AUTHORIZED
        held.close()
        fleet_mate = setup.vehicle(A2)
        assert fleet_mate.publish(f"{P}/vehicles/{A2}/events", b"{}") in OK
        fleet_mate.close()


# The ACL documented before issue 12 (finding 3): patterns only, every fleet's monitors readable.
FORMER_ACL = f"""user backend
topic readwrite {P}/#

pattern write {P}/vehicles/%u/events
pattern readwrite {P}/vehicles/%u/status
pattern readwrite {P}/vehicles/%u/monitors/#
pattern read {P}/fleets/+/monitors/#
"""


def test_finding_3_reproduced_with_the_former_acl_and_gone_with_the_shipped_one(
    tmp_path: Path,
) -> None:
    setup = _deploy(tmp_path)
    broker = setup.broker
    broker.acl_file.write_text(FORMER_ACL)
    with broker:
        backend = setup.service("backend")
        for fleet in ("fleet-north", "fleet-south"):
            topic = f"{P}/fleets/{fleet}/monitors/{fleet}"
            assert backend.publish(topic, b"{}", retain=True) in OK
        backend.close()
        sentinel = f"{P}/fleets/fleet-north/monitors/+"
        vehicle = setup.vehicle(A)
        leaked = _retained_seen(vehicle, [f"{P}/fleets/+/monitors/+"], sentinel)
        vehicle.close()
        assert f"{P}/fleets/fleet-south/monitors/fleet-south" in leaked  # the finding
        broker.write_acl(broker.access)  # the shipped ACL for the same fleet file
        broker.reload()
        deadline = time.monotonic() + 20
        while leaked and time.monotonic() < deadline:
            vehicle = setup.vehicle(A)
            leaked = _retained_seen(vehicle, [f"{P}/fleets/fleet-south/monitors/+"], sentinel)
            vehicle.close()
        assert leaked == set()


def test_acl_changes_apply_on_reload(tmp_path: Path) -> None:
    """SIGHUP (systemctl reload): a vehicle moved to another fleet reads that fleet's monitors
    and no longer its old fleet's, one removed from the fleet file loses every right, without
    a broker restart."""
    setup = _deploy(tmp_path)
    fleets = f"{P}/fleets/+/monitors/+"
    with setup.broker as broker:
        backend = setup.service("backend")
        for topic in (
            f"{P}/fleets/fleet-south/monitors/south",
            f"{P}/fleets/fleet-north/monitors/north",
            f"{P}/vehicles/{A}/monitors/own-a",
        ):
            assert backend.publish(topic, b"{}", retain=True) in OK
        backend.close()
        vehicle = setup.vehicle(A)
        before = _retained_seen(vehicle, [fleets], f"{P}/vehicles/{A}/monitors/+")
        vehicle.close()
        assert before == {f"{P}/fleets/fleet-north/monitors/north"}
        staying, leaving = setup.vehicle(B), setup.vehicle(A2)  # connected across the reload
        assert leaving.publish(f"{P}/vehicles/{A2}/events", b"{}") in OK
        moved = dict(broker.access.vehicles) | {A: "fleet-south"}
        del moved[A2]
        broker.write_acl(BrokerAccess(prefix=P, vehicles=tuple(moved.items())))
        broker.reload()
        deadline = time.monotonic() + 20
        while True:  # the reload is asynchronous: ask until the broker answers the new way
            vehicle = setup.vehicle(A)
            after = _retained_seen(vehicle, [fleets], f"{P}/vehicles/{A}/monitors/+")
            vehicle.close()
            if after != before or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert after == {f"{P}/fleets/fleet-south/monitors/south"}
        # a connection opened before the reload gets the new rules too, and is not dropped
        assert leaving.publish(f"{P}/vehicles/{A2}/events", b"{}") == NOT_AUTHORIZED
        assert staying.publish(f"{P}/vehicles/{B}/events", b"{}") in OK
        assert not staying.disconnected.is_set() and not leaving.disconnected.is_set()
        staying.close()
        leaving.close()
        removed = setup.vehicle(A2)
        assert removed.publish(f"{P}/vehicles/{A2}/events", b"{}") == NOT_AUTHORIZED
        removed.close()
