"""agent.uplink.mqtt against a real mosquitto: order, PUBACK deletes, broker outage, status/will."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from agent.config import MqttConfig
from agent.uplink.mqtt import Acked, Connected, LinkEvent, MqttLink, Will
from agent.uplink.outbox import Outbox
from agent.uplink.pump import EventPump
from agent.wire import Topics, event_from_json, status_to_json
from tests.agent.daemon.conftest import VIN, Collector, make_event
from tests.conftest import ROOT
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "event.schema.json").read_text())


def _config(broker: Mosquitto, **kw: object) -> MqttConfig:
    return MqttConfig(
        host=broker.host, port=broker.port, reconnect_min=0.1, reconnect_max=0.5, **kw
    )  # type: ignore[arg-type]


def _drive(inbox: queue.Queue[LinkEvent], pump: EventPump, until: Callable[[], bool]) -> None:
    """The main loop in miniature: drain the link's queue, ack in groups, fill the window."""
    deadline = time.monotonic() + 30
    while not until():
        assert time.monotonic() < deadline, "pump did not finish"
        acks: list[Acked] = []
        try:
            item = inbox.get(timeout=0.05)
            while True:
                if isinstance(item, Acked):
                    acks.append(item)
                else:
                    pump.handle_acks(acks)
                    acks = []
                    pump.handle(item)
                item = inbox.get_nowait()
        except queue.Empty:
            pass
        pump.handle_acks(acks)
        pump.fill()


def _in_order(payloads: list[bytes]) -> list[int]:
    """Sequence numbers of first occurrences (duplicates by event id removed)."""
    seen: set[str] = set()
    seqs = []
    for payload in payloads:
        event = event_from_json(payload)
        if event.event_id not in seen:
            seen.add(event.event_id)
            seqs.append(event.seq)
    return seqs


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_events_arrive_in_order_and_match_schema(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    protocol: str,
) -> None:
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    outbox = Outbox(tmp_path / "o.sqlite")
    outbox.append([make_event(outbox.next()) for _ in range(120)])
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(_config(mosquitto, protocol=protocol), "agent-1", inbox.put)
    pump = EventPump(outbox, link, TOPICS, window=16)
    link.start()
    try:
        _drive(inbox, pump, lambda: outbox.depth() == 0)
        collector.wait_for(lambda c: len(c.payloads()) >= 120)
    finally:
        link.stop()
    assert _in_order(collector.payloads()) == list(range(1, 121))
    for payload in collector.payloads()[:5]:
        jsonschema.validate(json.loads(payload), SCHEMA)
    assert pump.counters["acked"] == 120


def test_broker_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, mosquitto: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    outbox = Outbox(tmp_path / "o.sqlite")
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(_config(mosquitto), "agent-2", inbox.put)
    pump = EventPump(outbox, link, TOPICS, window=8)
    link.start()
    try:
        outbox.append([make_event(outbox.next()) for _ in range(40)])
        _drive(inbox, pump, lambda: outbox.depth() == 0)
        # Acknowledged to the agent is not yet forwarded to the subscriber: a broker stopped in
        # between drops what it still held for a non-persistent session (a flake under load).
        collector.wait_for(lambda c: len(set(_in_order(c.payloads()))) >= 40)
        mosquitto.stop()
        outbox.append([make_event(outbox.next()) for _ in range(40)])
        _drive(inbox, pump, lambda: not link.connected)
        time.sleep(0.5)  # a while without a broker: reconnect attempts fail and back off
        assert outbox.depth() == 40
        subacks = collector.subacks
        mosquitto.start()
        collector.wait_for(lambda c: c.subacks > subacks)
        _drive(inbox, pump, lambda: outbox.depth() == 0)
        collector.wait_for(lambda c: len(set(_in_order(c.payloads()))) >= 80)
    finally:
        link.stop()
    assert _in_order(collector.payloads()) == list(range(1, 81))
    assert link.counters["connect_failures"] >= 1


def test_status_retained_and_last_will_offline(
    tmp_path: Path, mosquitto: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 23, tzinfo=UTC)
    will = Will(TOPICS.status(VIN), status_to_json(vin=VIN, online=False, at=at))
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(_config(mosquitto, keepalive=1), "agent-3", inbox.put, will=will)
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert (
        link.publish(TOPICS.status(VIN), status_to_json(vin=VIN, online=True, at=at), retain=True)
        > 0
    )
    time.sleep(0.2)
    late = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.status(VIN)])
    late.wait_for(lambda c: len(c.payloads()) >= 1)
    assert json.loads(late.payloads()[0])["online"] is True
    assert late.messages[0][2] is True  # retained
    # an unclean end: the broker publishes the will
    assert link._client is not None
    sock = link._client.socket()
    assert sock is not None
    sock.close()
    late.wait_for(lambda c: any(json.loads(p)["online"] is False for p in c.payloads()))
    link.stop()


class _CountingLink:
    """The pump's view of a link, always connected: publishes are counted, not sent."""

    connected = True
    generation = 0

    def __init__(self) -> None:
        self.published: list[bytes] = []

    def publish(self, _topic: str, payload: bytes, **_kw: object) -> int:
        self.published.append(payload)
        return len(self.published)


def test_a_backlog_drains_at_the_configured_pace(tmp_path: Path) -> None:
    """The backend drops what a vehicle sends beyond its rate limit, so the agent paces itself:
    a burst at once, then ``max_rate`` per second, in order, with nothing left behind."""
    now = [1000.0]
    outbox = Outbox(tmp_path / "o.sqlite")
    outbox.append([make_event(outbox.next()) for _ in range(60)])
    link = _CountingLink()
    pump = EventPump(
        outbox, link, TOPICS, window=100, clock=lambda: now[0], max_rate=10.0, burst=20
    )  # type: ignore[arg-type]
    pump.handle(Connected(0))

    def ack_all() -> None:
        pump.handle_acks([Acked(0, mid, True, "") for mid in range(1, len(link.published) + 1)])

    assert pump.fill() == 20  # the burst
    assert pump.fill() == 0 and pump.next_send_in() == pytest.approx(0.1)
    now[0] += 0.55
    assert pump.fill() == 5  # 10 per second
    now[0] += 10.0
    assert pump.fill() == 20  # refilled, but never more than the burst
    now[0] += 1.5
    assert pump.fill() == 15  # the rest
    ack_all()
    assert outbox.depth() == 0 and pump.next_send_in() is None
    assert _in_order(link.published) == list(range(1, 61))
