"""The whole chain with real processes: simulator -> agent -> mosquitto (TLS, ACL) -> backend ->
HTTPS receiver (trustme CA, Standard Webhooks signatures). Happy path, then the faults of
issue 8 in one drive: the broker restarted, the backend SIGKILLed and restarted, the receiver
down then back.
Every event the agent published is delivered; a repeat only ever carries the same webhook-id."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import paho.mqtt.client as mqtt
import pytest

from agent.paho_compat import stop_network_loop
from scripts.chain import PREFIX, Chain
from scripts.receiver import Notification
from tests.e2e.schemas import errors

pytestmark = pytest.mark.slow
DRIVE_SECONDS = 36
EXPECTED = 7  # 5 door openings, leaving the depot, oil hot


def _key(monitor_id: str, event: dict[str, object]) -> str:
    return f"{monitor_id}|{event['vin']}|{event['eventDate']}|{event['refresh']}"


def _published(chain: Chain) -> dict[str, dict[str, object]]:
    """Events seen on MQTT, by event id (QoS 1 may show one twice)."""
    assert chain.observer is not None
    return {s.json()["eventId"]: s.json() for s in chain.observer.events()}


def _delivered(chain: Chain) -> dict[str, list[Notification]]:
    found: dict[str, list[Notification]] = defaultdict(list)
    for note in chain.receiver.notifications():
        for event in note.events:
            found[_key(note.body["monitorId"], event)].append(note)
    return found


def _all_delivered(chain: Chain) -> bool:
    delivered = _delivered(chain)
    published = _published(chain).values()
    return all(_key(str(e["monitorId"]), e) in delivered for e in published)


def _undelivered(chain: Chain) -> str:
    """What a time-out must say: the events not delivered and their deliveries' last errors."""
    delivered, published = _delivered(chain), _published(chain).values()
    missing = [e for e in published if _key(str(e["monitorId"]), e) not in delivered]
    lines = [f"{len(missing)} of {len(published)} published event(s) not delivered:"]
    for event in sorted(missing, key=lambda e: int(str(e["seq"]))):
        lines.append(
            f"  monitor {event['monitorId']} date {event['eventDate']} seq {event['seq']}"
            f" refresh {event['refresh']}"
        )
    for monitor_id in sorted({str(e["monitorId"]) for e in missing}):
        lines += chain.delivery_report(monitor_id)
    return "\n".join(lines)


def _wait_all_delivered(chain: Chain, timeout: float) -> None:
    chain.wait_for(
        lambda: _all_delivered(chain),
        timeout,
        "every event to be delivered",
        explain=lambda: _undelivered(chain),
    )


def _drive(chain: Chain) -> float:
    """Start the agent; return the wall-clock start of its drive (agent online)."""
    chain.start_agent()
    chain.wait_for(chain.monitors_applied, 30, "the monitors to be applied", chain.agent)
    return time.monotonic()


def _until(start: float, offset: float) -> None:
    time.sleep(max(0.0, start + offset - time.monotonic()))


def _check_delivery(chain: Chain) -> None:
    published = _published(chain)
    delivered = _delivered(chain)
    assert len(published) == EXPECTED, sorted(str(e["eventDate"]) for e in published.values())
    seqs = sorted(int(str(e["seq"])) for e in published.values())
    assert seqs == list(range(seqs[0], seqs[0] + EXPECTED))  # the observer missed none
    for event in published.values():
        notes = delivered.get(_key(str(event["monitorId"]), event))
        assert notes, f"event {event['eventId']} ({event['monitorId']}) never delivered"
        assert len({n.webhook_id for n in notes}) == 1, "a repeat with another webhook-id"
        assert len({n.raw for n in notes}) == 1, "a repeat with another body"
    assert chain.receiver.tally.bad_signature == 0


def test_every_event_is_delivered_once_signed_and_schema_valid(chain: Chain) -> None:
    start = _drive(chain)
    _until(start, DRIVE_SECONDS)
    _wait_all_delivered(chain, 30)
    _check_delivery(chain)
    notes = chain.receiver.notifications()
    assert len(notes) == EXPECTED  # no fault: nothing repeated
    for note in notes:
        assert errors("webhook", note.body) == []
        assert note.headers["x-vehicle-id"] == chain.identity.vin  # Header attribute, $vin
        assert {"key": "vin", "value": chain.identity.vin} in note.body["attributes"]
    assert chain.observer is not None
    for seen in chain.observer.events():
        assert errors("event", seen.json()) == []
    statuses = [s.json() for s in chain.observer.seen("/status") if s.payload]
    states = [s.json() for s in chain.observer.seen("/state") if s.payload]
    assert statuses and states
    for status in statuses:
        assert errors("status", status) == []
    for state in states:
        assert errors("monitor-state", state) == []
    definitions = [
        s.json()
        for s in chain.observer.seen()
        if "/monitors/" in s.topic and not s.topic.endswith("/state") and s.payload
    ]
    assert len(definitions) >= 3  # the retained definitions the backend pushed
    for definition in definitions:
        assert errors("monitor", definition) == []
    depot = [e for e in _published(chain).values() if not e["values"]]
    assert len(depot) == 1 and depot[0]["labels"].get("clock") in (None, "gps")  # type: ignore[union-attr]


def test_a_vehicle_cannot_publish_under_another_vin(chain: Chain) -> None:
    vin = chain.identity.vin
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(chain.pki.ca_file))
    client.username_pw_set(vin, chain.passwords[vin])
    client.connect("127.0.0.1", chain.broker.port)
    client.loop_start()
    try:
        body = json.dumps({"spoof": True}).encode()
        for topic in (f"{PREFIX}/vehicles/OTHERVIN/events", f"{PREFIX}/vehicles/{vin}/events"):
            client.publish(topic, body, qos=1).wait_for_publish(5)
        assert chain.observer is not None
        chain.wait_for(lambda: bool(chain.observer and chain.observer.events()), 10, "own topic")
        topics = {s.topic for s in chain.observer.events()}
        assert topics == {f"{PREFIX}/vehicles/{vin}/events"}  # the other VIN never got through
    finally:
        stop_network_loop(client)
        client.disconnect()


def test_faults_broker_restart_backend_sigkill_receiver_outage(chain: Chain) -> None:
    start = _drive(chain)
    _until(start, 9.5)
    chain.broker.restart(down_for=4)  # the door opening at 12 s happens while it is down
    _until(start, 16.5)
    chain.backend.kill()  # SIGKILL: the door at 18 s and the depot exit at ~19 s meet no backend
    _until(start, 20)
    chain.start_backend()
    _until(start, 22.5)
    chain.receiver.stop()  # door 24 s, oil ~27.5 s, door 30 s: refused connections, retries
    _until(start, 31.5)
    chain.receiver.start()
    _until(start, DRIVE_SECONDS)
    _wait_all_delivered(chain, 60)
    time.sleep(2)  # a late repeat would show now
    _check_delivery(chain)
