"""The composed agent in one process: python-can ``virtual`` bus in, real mosquitto out."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import can
import jsonschema
import pytest

from agent.app import Agent
from agent.config import load_config
from agent.errors import OutboxError
from agent.wire import Topics, event_from_json
from tests.agent.daemon.conftest import VIN, Collector, agent_toml, engine_frame, oil_monitor
from tests.conftest import ROOT
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
SCHEMAS = ROOT / "docs" / "schemas"


class Running:
    """An Agent running its main loop in a thread, plus a virtual bus to talk to it."""

    def __init__(self, agent: Agent, channel: str) -> None:
        self.agent = agent
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(agent.run()))
        self.thread.start()
        # frames sent before the agent's reader joined the virtual channel would be lost
        deadline = time.monotonic() + 10
        while not all(r.source is not None and r.source.is_open for r in agent.readers):
            assert time.monotonic() < deadline, "the agent's CAN reader did not open"
            time.sleep(0.01)

    def send_oil(self, *temps: float) -> None:
        for temp in temps:
            frame_id, data = engine_frame(temp)
            self.bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=False))
            time.sleep(0.01)

    def stop(self) -> int:
        self.agent.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "agent did not stop"
        self.bus.shutdown()
        return self.result[0]


@pytest.fixture
def running(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(monitors: list[dict[str, object]] | None = None, port: int = 0) -> Running:
        channel = f"edgemon-{tmp_path.name}"
        path = agent_toml(
            tmp_path / "agent",
            port or mosquitto.port,
            can=f'interface = "virtual"\nchannel = "{channel}"',
            monitors=monitors,
        )
        started.append(Running(Agent(load_config(path, env={})), channel))
        return started[-1]

    yield start
    for item in started:
        if item.thread.is_alive():
            item.stop()


def _events(collector: Collector) -> list[dict[str, object]]:
    return [json.loads(p) for p in collector.payloads("/events")]


def _state(collector: Collector, monitor_id: str) -> dict[str, object] | None:
    topic = TOPICS.monitor_state(VIN, monitor_id)
    found = [p for t, p, _ in collector.messages if t == topic]
    return json.loads(found[-1]) if found and found[-1] else None


def test_local_monitor_fires_event_in_order_and_schema(
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    collector = collector_factory(
        mosquitto.host, mosquitto.port, [TOPICS.events(VIN), TOPICS.status(VIN)]
    )
    agent = running([oil_monitor("120", id="oil-local")])
    collector.wait_for(lambda c: len(c.payloads("/status")) >= 1)
    agent.send_oil(100, 130, 100, 131, 100, 132)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 3)
    events = _events(collector)
    schema = json.loads((SCHEMAS / "event.schema.json").read_text())
    for event in events:
        jsonschema.validate(event, schema)
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert {e["monitorId"] for e in events} == {"oil-local"}
    assert [event_from_json(json.dumps(e)).values[0].value for e in events] == ["130", "131", "132"]
    assert agent.stop() == 0
    first_status = json.loads(collector.payloads("/status")[0])
    last_status = json.loads(collector.payloads("/status")[-1])
    assert last_status["online"] is False
    status_schema = json.loads((SCHEMAS / "status.schema.json").read_text())
    jsonschema.validate(first_status, status_schema)
    jsonschema.validate(last_status, status_schema)
    # The bus says whether it is quiet: silent at start, active after the frames above.
    (bus,) = first_status["buses"]
    assert first_status["buses"][bus] == {"quiet": True, "lastFrameAgeS": None}
    assert last_status["buses"][bus]["quiet"] is False
    assert 0 <= last_status["buses"][bus]["lastFrameAgeS"] < 10


def test_pushed_monitors_apply_reject_and_delete(
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    collector = collector_factory(
        mosquitto.host,
        mosquitto.port,
        [TOPICS.events(VIN), f"{TOPICS.prefix}/vehicles/{VIN}/monitors/+/state"],
    )
    agent = running([oil_monitor("120", id="oil-local")])
    backend = collector.client
    backend.publish(
        TOPICS.vehicle_monitor(VIN, "hot"), json.dumps(oil_monitor("135")), qos=1, retain=True
    )
    bad = oil_monitor("135")
    bad["triggerParam"]["boolExp"] = "oil & !oil"
    bad["triggerParam"]["triggers"][0]["data"]["op"] = "sortOf"
    backend.publish(TOPICS.fleet_monitor("fleet-1", "bad"), json.dumps(bad), qos=1, retain=True)
    collector.wait_for(lambda c: _state(c, "hot") is not None and _state(c, "bad") is not None)
    hot, rejected = _state(collector, "hot"), _state(collector, "bad")
    assert hot is not None and hot["state"] == "applied"
    assert rejected is not None and rejected["state"] == "rejected"
    assert len(rejected["reasons"]) >= 2  # type: ignore[arg-type]
    schema = json.loads((SCHEMAS / "monitor-state.schema.json").read_text())
    jsonschema.validate(rejected, schema)

    agent.send_oil(100, 140)  # both the local (120) and the pushed (135) monitor fire
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 2)
    assert {e["monitorId"] for e in _events(collector)} == {"oil-local", "hot"}

    backend.publish(TOPICS.vehicle_monitor(VIN, "hot"), b"", qos=1, retain=True)
    collector.wait_for(lambda c: any(t.endswith("/hot/state") and not p for t, p, _ in c.messages))
    agent.send_oil(100, 141)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 3)
    time.sleep(0.3)
    assert [e["monitorId"] for e in _events(collector)][2:] == ["oil-local"]
    assert agent.stop() == 0


def _nmea(body: str) -> str:
    checksum = 0
    for char in body:
        checksum ^= ord(char)
    return f"${body}*{checksum:02X}\r\n"


def _nmea_file(path: Path, points: list[tuple[float, float]]) -> Path:
    """RMC + GGA + GSA epochs, one second apart, stamped with the current UTC time."""
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC)
    lines = []
    for i, (lat, lon) in enumerate(points):
        moment = start + timedelta(seconds=i)
        hms, dmy = moment.strftime("%H%M%S.00"), moment.strftime("%d%m%y")
        la = f"{int(lat):02d}{(lat % 1) * 60:08.5f},N"
        lo = f"{int(lon):03d}{(lon % 1) * 60:08.5f},E"
        lines.append(_nmea(f"GPRMC,{hms},A,{la},{lo},0.0,0.0,{dmy},,,A"))
        lines.append(_nmea(f"GPGGA,{hms},{la},{lo},1,08,0.9,35.0,M,47.0,M,,"))
        lines.append(_nmea("GPGSA,A,3,01,02,03,04,05,06,07,08,,,,,1.5,0.9,1.2"))
    path.write_text("".join(lines))
    return path


def test_gps_fixes_drive_a_zone_monitor(
    tmp_path: Path, mosquitto: Mosquitto, collector_factory: Callable[..., Collector]
) -> None:
    collector = collector_factory(
        mosquitto.host, mosquitto.port, [TOPICS.events(VIN), TOPICS.status(VIN)]
    )
    depot = {
        "id": "depot",
        "label": "at the depot",
        "subscribeParam": oil_monitor()["subscribeParam"],
        "triggerParam": {
            "triggers": [
                {
                    "name": "depot",
                    "zone": {
                        "transition": "In",
                        "place": {"radius": 1, "center": {"latitude": 48.85, "longitude": 2.35}},
                    },
                }
            ],
            "boolExp": "depot",
        },
        "extendedEventParam": ["vehicle.position"],
    }
    nmea = _nmea_file(tmp_path / "drive.nmea", [(48.0, 2.0)] * 3 + [(48.8501, 2.3501)] * 3)
    path = agent_toml(tmp_path / "agent", mosquitto.port, monitors=[depot])
    path.write_text(path.read_text() + f'[gps]\nport = "{nmea}"\nreplay_pace = "fast"\n')
    agent = Agent(load_config(path, env={}))
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    finally:
        agent.request_stop()
        thread.join(15)
    event = json.loads(collector.payloads("/events")[0])
    assert event["monitorId"] == "depot"
    assert event["extensions"][0]["type"] == "vehicle.position"
    status = json.loads(collector.payloads("/status")[-1])
    assert status["online"] is False
    assert not thread.is_alive()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions across its own restart (stopped by PID afterwards)."""
    store = tmp_path / "persist"
    store.mkdir()
    broker = Mosquitto(
        tmp_path / "persistent-broker",
        extra_conf=f"persistence true\npersistence_location {store}/\n"
        # as root, mosquitto drops to its own user, which cannot write pytest's tmp dirs
        + ("user root\n" if os.geteuid() == 0 else ""),
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_events_fired_while_the_broker_is_down_arrive_after_it_returns(
    persistent_broker: Mosquitto,
    running: Callable[..., Running],
    collector_factory: Callable[..., Collector],
) -> None:
    # The broker keeps the subscriber's session across its restart, so whichever of the agent
    # and the subscriber reconnects first, nothing published meanwhile is missed.
    broker = persistent_broker
    collector = collector_factory(
        broker.host, broker.port, [TOPICS.events(VIN)], session="backend-1"
    )
    agent = running([oil_monitor("120", id="oil-local")], port=broker.port)
    agent.send_oil(100, 130)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    broker.stop()
    agent.send_oil(100, 131, 100, 132, 100, 133)
    deadline = time.monotonic() + 10
    while agent.agent.outbox.depth() < 3:  # committed while offline
        assert time.monotonic() < deadline, "events were not committed while offline"
        time.sleep(0.05)
    broker.start()
    collector.wait_for(lambda c: len({json.loads(p)["seq"] for p in c.payloads("/events")}) >= 4)
    seqs: list[int] = []
    for event in _events(collector):
        if event["seq"] not in seqs:
            seqs.append(event["seq"])  # type: ignore[arg-type]
    assert seqs == [1, 2, 3, 4]
    assert agent.stop() == 0


def test_paused_pushed_monitor_does_not_fire_until_resumed(
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    collector = collector_factory(
        mosquitto.host,
        mosquitto.port,
        [TOPICS.events(VIN), f"{TOPICS.prefix}/vehicles/{VIN}/monitors/+/state"],
    )
    agent = running()
    topic = TOPICS.vehicle_monitor(VIN, "hot")
    paused = json.dumps(oil_monitor("120", status="Paused"))
    collector.client.publish(topic, paused, qos=1, retain=True)
    collector.wait_for(lambda c: _state(c, "hot") is not None)
    agent.send_oil(100, 140, 100, 141)
    time.sleep(0.5)
    assert _events(collector) == []
    collector.client.publish(topic, json.dumps(oil_monitor("120")), qos=1, retain=True)
    collector.wait_for(lambda c: len([t for t, _, _ in c.messages if t.endswith("/state")]) >= 2)
    agent.send_oil(100, 142)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    assert [e["monitorId"] for e in _events(collector)] == ["hot"]
    assert agent.stop() == 0


def test_restart_while_firing_sends_no_duplicate_and_seq_continues(
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    first = running([oil_monitor("120", id="oil-local")])
    first.send_oil(100, 140)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    assert first.stop() == 0
    second = running([oil_monitor("120", id="oil-local")])  # same state directory
    second.send_oil(141, 142)  # still above: the fired state survived, no new event
    time.sleep(0.5)
    assert len(_events(collector)) == 1
    second.send_oil(100, 143)  # re-armed, fires again
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 2)
    assert [e["seq"] for e in _events(collector)] == [1, 2]
    assert second.stop() == 0


def test_broken_monitors_file_on_reload_keeps_the_running_monitors(
    tmp_path: Path,
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    agent = running([oil_monitor("120", id="oil-local")])
    (tmp_path / "agent" / "monitors.json").write_text("[{broken")
    agent.agent.request_reload()
    deadline = time.monotonic() + 10
    while agent.agent.counters()["monitors.local_file_errors"] < 1:
        assert time.monotonic() < deadline, "reload did not happen"
        time.sleep(0.02)
    agent.send_oil(100, 130)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    assert agent.stop() == 0


def test_a_refused_commit_holds_events_and_retries(
    running: Callable[..., Running],
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
) -> None:
    """The disk refusing a write (injected: a root test cannot make SQLite fail for real)."""
    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    agent = running([oil_monitor("120", id="oil-local")])
    outbox = agent.agent.outbox
    real_append = outbox.append
    refusals = [2]

    def flaky_append(events: Any, now: float | None = None) -> int:
        events = list(events)
        if events and refusals[0] > 0:
            refusals[0] -= 1
            raise OutboxError("cannot write outbox: database or disk is full (injected)")
        return real_append(events, now)

    outbox.append = flaky_append  # type: ignore[method-assign]
    agent.send_oil(100, 130)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 1)
    assert agent.agent.commit_failures == 2
    assert [e["seq"] for e in _events(collector)] == [1]
    assert agent.agent.counters()["outbox.held"] == 0
    assert agent.stop() == 0
