"""Fixtures of the daemon tests: synthetic events (the engine's Event type, built by hand)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.model import Event, EventValue
from agent.paho_compat import stop_network_loop
from agent.wire import uuid7

VIN = "VF3DAEMON00000001"


def oil_monitor(threshold: str = "130", **extra: object) -> dict[str, Any]:
    """A valid monitor for the demo vehicle: oil temperature above a threshold."""
    body: dict[str, Any] = {
        "label": f"oil above {threshold}",
        "subscribeParam": {
            "callback": {"webhook": {"target": "https://example.com/hook", "name": "h"}}
        },
        "triggerParam": {
            "triggers": [
                {
                    "name": "oil",
                    "data": {
                        "data": "vehicle.engines.thermic.oil.temp",
                        "op": "greaterThan",
                        "value": [threshold],
                    },
                }
            ],
            "boolExp": "oil",
        },
    }
    body.update(extra)
    return body


def make_event(seq: int, monitor_id: str = "oil-hot", vin: str = VIN) -> Event:
    return Event(
        event_id=uuid7(),
        seq=seq,
        vin=vin,
        fleet_id="fleet-1",
        monitor_id=monitor_id,
        event_date=datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
        refresh=False,
        values=(EventValue("vehicle.engines.thermic.oil.temp", str(100 + seq)),),
    )


@pytest.fixture
def event_factory() -> Callable[..., Event]:
    return make_event


class Collector:
    """A plain paho subscriber that records (topic, payload, retain) in arrival order."""

    def __init__(
        self, host: str, port: int, topics: list[str], session: str = "", **tls: Any
    ) -> None:
        """``session``: a client id whose session (and queued QoS 1 messages) outlives a
        disconnect, when the broker persists sessions across its own restart."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.subacks = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=session, protocol=mqtt.MQTTv5
        )
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        if session:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            self.client.connect(host, port, clean_start=False, properties=properties)
        else:
            self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscriber did not get its SUBACK"

    def _on_subscribe(self, *_args: Any) -> None:
        self.subacks += 1
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def payloads(self, suffix: str = "") -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate: Callable[[Collector], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {len(self.messages)} message(s)")
            time.sleep(0.02)

    def close(self) -> None:
        stop_network_loop(self.client)
        self.client.disconnect()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(host: str, port: int, topics: list[str], **kw: Any) -> Collector:
        made.append(Collector(host, port, topics, **kw))
        return made[-1]

    yield make
    for item in made:
        item.close()


DEMO_DBC_DB = None


def engine_frame(oil_temp: float) -> tuple[int, bytes]:
    """An EngineData frame of the demo DBC with the given oil temperature (engine running)."""
    import cantools

    from agent.can.dbc import DEMO_DBC

    global DEMO_DBC_DB  # noqa: PLW0603 - loaded once per test session
    if DEMO_DBC_DB is None:
        DEMO_DBC_DB = cantools.database.load_file(DEMO_DBC)
    message = DEMO_DBC_DB.get_message_by_name("EngineData")
    values = {signal.name: 0 for signal in message.signals}
    values.update(OilTemp=oil_temp, EngineRunning=1, PowertrainStatus=2, EngineSpeed=800)
    return message.frame_id, message.encode(values, strict=False)


def agent_toml(
    folder: Path,
    port: int,
    *,
    can: str = "",
    monitors: list[dict[str, Any]] | None = None,
    mqtt_extra: str = "",
) -> Path:
    """An agent.toml for tests: the demo vehicle, a local broker, state in ``folder``."""
    from agent.can.dbc import DEMO_DBC, DEMO_MAP

    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f'vin = "{VIN}"',
        'fleet_id = "fleet-1"',
        f'state_dir = "{folder / "state"}"',
    ]
    if monitors is not None:
        (folder / "monitors.json").write_text(json.dumps(monitors))
        lines.append('monitors_file = "monitors.json"')
    lines += [
        "[[can]]",
        'name = "can0"',
        f'dbc = ["{DEMO_DBC}"]',
        f'signal_map = "{DEMO_MAP}"',
        can or 'interface = "virtual"\nchannel = "unused"',
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "reconnect_min = 0.1",
        "reconnect_max = 0.5",
        mqtt_extra,
    ]
    path = folder / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_oil_log(path: Path, count: int, step: float = 0.001) -> Path:
    """A candump log alternating the oil temperature 100/140 °C: each 140 fires ``oil > 120``."""
    lines = []
    for i in range(count):
        frame_id, data = engine_frame(140 if i % 2 else 100)
        lines.append(f"({1_700_000_000 + i * step:.6f}) can0 {frame_id:03X}#{data.hex().upper()}")
    path.write_text("\n".join(lines) + "\n")
    return path
