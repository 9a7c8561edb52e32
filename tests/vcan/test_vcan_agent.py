"""The agent's CAN path on real SocketCAN: `edgemon-agent run` on vcan0 fed by can-utils,
CanSource + Decoder counters (kernel filters), kernel timestamps, CAN FD, link down/up."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

import agent.app
import agent.commands.simulate  # noqa: F401 - same for `edgemon-agent simulate`
from agent.can.dbc import DEMO_DBC, DEMO_MAP, demo_buses, load_vehicle
from agent.can.decode import Decoder
from agent.can.source import BusConfig, CanSource
from agent.model import Event, Frame
from agent.paho_compat import stop_network_loop
from agent.state import VehicleState
from agent.wire import Topics, event_from_json
from tests.support.mosquitto import Mosquitto, free_port
from tests.vcan.harness import VcanBus
from tests.vcan.vcan_tools import (
    agent_cli,
    cansend,
    demo_frame,
    demo_frame_id,
    engine_frame,
    kernel_receivers,
    process,
    sh,
    wait_until,
)

pytestmark = pytest.mark.vcan

VIN = "VF3VCANTEST000001"
OIL = "vehicle.engines.thermic.oil.temp"
ENGINE_ID = demo_frame_id("EngineData")
# Frames of ids no monitor uses: the kernel filters must keep them away from Python.
NOISE = (
    demo_frame("VehicleMotion", Speed=42.0, Moving=1),
    demo_frame("DoorStatus", DoorFrontLeft=1),
    "7FF#0102",
    "18DAF110#0203",
)


def _oil_monitor() -> dict[str, object]:
    return {
        "id": "oil-hot",
        "label": "oil above 120",
        "subscribeParam": {
            "callback": {"webhook": {"target": "https://example.com/hook", "name": "h"}}
        },
        "triggerParam": {
            "triggers": [
                {"name": "oil", "data": {"data": OIL, "op": "greaterThan", "value": ["120"]}}
            ],
            "boolExp": "oil",
        },
    }


def _agent_toml(folder: Path, channel: str, port: int) -> Path:
    (folder / "monitors.json").write_text(json.dumps([_oil_monitor()]))
    text = f"""\
vin = "{VIN}"
fleet_id = "fleet-vcan"
state_dir = "{folder / "state"}"
monitors_file = "monitors.json"

[[can]]
name = "can0"
interface = "socketcan"
channel = "{channel}"
dbc = ["{DEMO_DBC}"]
signal_map = "{DEMO_MAP}"

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min = 0.2
reconnect_max = 0.5
"""
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def _outbox_events(path: Path) -> list[bytes]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [bytes(row[0]) for row in db.execute("SELECT payload FROM events ORDER BY seq")]
    except sqlite3.OperationalError:
        return []  # the agent has not created its tables yet
    finally:
        db.close()


class Subscriber:
    """A durable MQTT session (clean_session=False): what the broker queues while it is away."""

    def __init__(self, port: int, topic: str) -> None:
        self.port, self.topic = port, topic
        self.payloads: list[bytes] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="vcan-collector", clean_session=False
        )
        self.client.on_message = lambda _c, _u, msg: self.payloads.append(bytes(msg.payload))
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)

    def connect(self) -> None:
        self._ready.clear()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._ready.wait(20), "no SUBACK"

    def disconnect(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)


def _oil(event: Event) -> str:
    return {v.data: v.value for v in event.values}[OIL]


def _bounce_link(channel: str) -> None:
    assert sh("ip", "link", "set", channel, "down").returncode == 0
    try:
        time.sleep(0.5)
    finally:
        assert sh("ip", "link", "set", channel, "up").returncode == 0


def test_vcan_agent_run_fires_on_cansend_and_canplayer(vcan: VcanBus, tmp_path: Path) -> None:
    """The real daemon on vcan0: frames from cansend and canplayer are decoded, the monitor
    fires, the daemon survives vcan0 going down and up, the events wait in the outbox while the
    broker is down, then are published."""
    port = free_port()
    broker_dir = tmp_path / "broker"
    durable = f"user root\npersistence true\npersistence_location {broker_dir}/\n"
    broker = Mosquitto(broker_dir, port=port, extra_conf=durable)
    subscriber = Subscriber(port, Topics().events(VIN))
    with broker:  # register the durable subscription, then take the broker down
        subscriber.connect()
        subscriber.disconnect()
    config = _agent_toml(tmp_path, vcan.classic, port)
    outbox = tmp_path / "state" / "outbox.sqlite"
    played = tmp_path / "played.log"
    with agent_cli(["run", "-c", str(config)], tmp_path / "agent.log") as agent:
        wait_until(
            lambda: ENGINE_ID in dict(kernel_receivers(vcan.classic)),
            120,
            "the agent's kernel filter on EngineData",
        )
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()
        assert (0, 0) not in kernel_receivers(vcan.classic)  # no catch-all receiver
        for frame in (*NOISE, engine_frame(100), engine_frame(130)):
            cansend(vcan.classic, frame)
        lines = [*NOISE, engine_frame(100), *NOISE, engine_frame(131)]
        played.write_text(
            "".join(
                f"({1700000000 + i / 100:.6f}) {vcan.classic} {f}\n" for i, f in enumerate(lines)
            )
        )
        replay = sh("canplayer", "-I", str(played))
        assert replay.returncode == 0, replay.stderr
        wait_until(lambda: len(_outbox_events(outbox)) >= 2, 60, "two events in the outbox")
        stored = [event_from_json(p) for p in _outbox_events(outbox)]
        assert [(e.seq, e.monitor_id) for e in stored] == [(1, "oil-hot"), (2, "oil-hot")]
        assert [_oil(e) for e in stored] == ["130", "131"]
        if vcan.admin:  # the daemon survives its interface going down and up
            _bounce_link(vcan.classic)

            def fired_again() -> bool:  # frames sent while the agent reopens are lost
                cansend(vcan.classic, engine_frame(100))
                cansend(vcan.classic, engine_frame(132))
                return len(_outbox_events(outbox)) >= 3

            wait_until(fired_again, 60, "an event after the link came back", poll=0.5)
            stored = [event_from_json(p) for p in _outbox_events(outbox)]
            assert {_oil(e) for e in stored[2:]} == {"132"}
            assert agent.poll() is None
        broker.start()  # same port, same durable session: the agent reconnects and publishes
        try:
            wait_until(lambda: not _outbox_events(outbox), 60, "the outbox to drain")
            subscriber.connect()
            wait_until(lambda: len(subscriber.payloads) >= len(stored), 30, "the queued events")
            subscriber.disconnect()
        finally:
            agent.terminate()
            code = agent.wait(timeout=30)
            broker.stop()
    published = [event_from_json(p) for p in subscriber.payloads]
    assert [e.event_id for e in published] == [e.event_id for e in stored]
    assert code == 0, (tmp_path / "agent.log").read_text()


def _decoder_for(names: list[str]) -> Decoder:
    decoder = Decoder(load_vehicle(demo_buses()))
    decoder.use(names)
    return decoder


def _drain(source: CanSource, quiet: float = 0.5) -> list[Frame]:
    frames = []
    while (frame := source.recv(quiet)) is not None:
        frames.append(frame)
    return frames


def test_vcan_kernel_filters_keep_unused_ids_from_the_decoder(vcan: VcanBus) -> None:
    decoder = _decoder_for([OIL])
    filters = decoder.can_filters("can0")
    config = BusConfig(name="can0", interface="socketcan", channel=vcan.classic)
    with CanSource(config, filters) as filtered, CanSource(config, None) as unfiltered:
        for frame in (*NOISE, engine_frame(90), *NOISE, engine_frame(95)):
            cansend(vcan.classic, frame)
        state, everything = VehicleState(), VehicleState()
        changed = [decoder.feed(f, state) for f in _drain(filtered)]
        seen_all = _drain(unfiltered)
    assert filtered.counters["frames"] == 2
    assert unfiltered.counters["frames"] == 2 + 2 * len(NOISE)
    assert decoder.counters["decoded"] == 2
    assert decoder.counters["skipped_unknown_id"] == decoder.counters["skipped_unused"] == 0
    assert OIL in changed[0] and OIL in changed[1]
    latest = state.get(OIL)
    assert latest is not None and latest.value == 95
    unfiltered_decoder = _decoder_for([OIL])
    for frame in seen_all:
        unfiltered_decoder.feed(frame, everything)
    skipped = unfiltered_decoder.counters
    assert skipped["skipped_unknown_id"] + skipped["skipped_unused"] == 2 * len(NOISE)


def test_vcan_decoded_sample_keeps_the_kernel_timestamp(vcan: VcanBus) -> None:
    decoder = _decoder_for([OIL])
    config = BusConfig(name="can0", interface="socketcan", channel=vcan.classic)
    with CanSource(config, decoder.can_filters("can0")) as source:
        before = time.time()
        cansend(vcan.classic, engine_frame(77))
        after = time.time()
        time.sleep(1.0)  # decoded a second later than the kernel received it
        frame = source.recv(5)
        assert frame is not None
        state = VehicleState()
        decoder.feed(frame, state)
        decoded_at = time.time()
    sample = state.get(OIL)
    assert sample is not None and sample.value == 77
    assert before - 0.01 <= sample.timestamp <= after + 0.01
    assert decoded_at - sample.timestamp >= 0.9


def test_vcan_can_source_reads_fd_frames(vcan: VcanBus) -> None:
    if vcan.fd is None:
        pytest.skip("no vcan with mtu 72 here")
    config = BusConfig(name="body", interface="socketcan", channel=vcan.fd, fd=True)
    payload = bytes(range(100, 148))
    with CanSource(config, [{"can_id": 0x321, "can_mask": 0x7FF, "extended": False}]) as source:
        cansend(vcan.fd, f"123##1{bytes(64).hex()}")  # filtered out by the kernel
        cansend(vcan.fd, f"321##1{payload.hex()}")
        frames = _drain(source)
    assert [(f.arbitration_id, f.is_fd, f.data, f.bus) for f in frames] == [
        (0x321, True, payload, "body")
    ]
    assert source.counters["frames"] == 1


def test_vcan_can_source_reopens_after_link_down_up(vcan: VcanBus) -> None:
    if not vcan.admin:
        pytest.skip("taking the link down needs root")
    config = BusConfig(name="can0", interface="socketcan", channel=vcan.classic)
    with CanSource(config, None, reopen_delay=0.1, max_reopen_delay=0.2) as source:
        cansend(vcan.classic, "123#01")
        assert [f.data for f in _drain(source)] == [b"\x01"]
        assert sh("ip", "link", "set", vcan.classic, "down").returncode == 0
        try:
            for _ in range(5):
                assert source.recv(0.2) is None
        finally:
            assert sh("ip", "link", "set", vcan.classic, "up").returncode == 0
        down_counters = dict(source.counters)

        def healthy() -> bool:  # frames sent while it reopens are lost, as on a real bus
            errors = source.counters["receive_errors"]
            source.recv(0.2)
            return source.is_open and source.counters["receive_errors"] == errors

        wait_until(healthy, 10, "the source to reopen")
        cansend(vcan.classic, "123#02")
        frames = []
        deadline = time.monotonic() + 10
        while not frames and time.monotonic() < deadline:
            frames += [f.data for f in _drain(source, 0.2)]
        counters = dict(source.counters)
    assert frames == [b"\x02"], (down_counters, counters)
    assert down_counters["receive_errors"] >= 1
    assert counters["reopens"] >= 1


def test_vcan_simulate_onto_vcan0_is_seen_by_candump(vcan: VcanBus, tmp_path: Path) -> None:
    scenario = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "short-drive.toml"
    before = len(kernel_receivers(vcan.classic))
    with process(["candump", "-L", vcan.classic], tmp_path / "candump.log") as candump:
        wait_until(lambda: len(kernel_receivers(vcan.classic)) > before, 10, "candump to bind")
        argv = ["simulate", "--scenario", str(scenario), "--start", "now", "--duration", "2"]
        argv += ["--can-interface", "socketcan", "--can-channel", vcan.classic]
        with agent_cli(argv, tmp_path / "simulate.log") as simulate:
            code = simulate.wait(timeout=120)
        assert code == 0, (tmp_path / "simulate.log").read_text()
        time.sleep(0.3)
        candump.terminate()
        candump.wait(timeout=10)
    lines = (tmp_path / "candump.log").read_text().splitlines()
    ids = {int(line.split()[2].split("#")[0], 16) for line in lines}
    assert demo_frame_id("EngineData") in ids
    assert demo_frame_id("VehicleMotion") in ids
    assert len(lines) >= 10
    stamps = [float(line.split()[0].strip("()")) for line in lines]
    assert stamps == sorted(stamps)
    assert os.path.getsize(tmp_path / "candump.log") > 0
