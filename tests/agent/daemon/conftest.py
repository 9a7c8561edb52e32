"""Fixtures of the daemon tests: synthetic events (the engine's Event type, built by hand)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.model import Event, EventValue
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

    def __init__(self, host: str, port: int, topics: list[str], **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.subacks = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
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
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(host: str, port: int, topics: list[str], **tls: Any) -> Collector:
        made.append(Collector(host, port, topics, **tls))
        return made[-1]

    yield make
    for item in made:
        item.close()
