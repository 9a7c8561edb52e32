"""Events the broker accepts but delivers to nobody (MQTT 5 reason 16) stay in the outbox.

mosquitto does not restore a shared subscription after its own restart: until the backend
subscribes again, a PUBACK with "No matching subscribers" means the event reached nobody.
"""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttConfig
from agent.paho_compat import stop_network_loop
from agent.uplink.mqtt import Acked, LinkEvent, MqttLink
from agent.uplink.outbox import Outbox
from agent.uplink.pump import EventPump
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, make_event
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()


def _subscriber(broker: Mosquitto, seen: list[int]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: seen.append(json.loads(msg.payload)["seq"])
    subscribed: list[bool] = []
    client.on_subscribe = lambda *_a: subscribed.append(True)
    client.on_connect = lambda c, *_a: c.subscribe(TOPICS.events(VIN), qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not subscribed:
        assert time.monotonic() < deadline, "the subscriber never subscribed"
        time.sleep(0.02)
    return client


def test_unheard_events_are_kept_then_resent_in_order(mosquitto: Mosquitto, tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite")
    outbox.append([make_event(outbox.next()) for _ in range(3)])
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    link = MqttLink(MqttConfig(host=mosquitto.host, port=mosquitto.port), "nobody", inbox.put)
    pump = EventPump(outbox, link, TOPICS, window=10, hold_min=0.2, hold_max=0.5)
    seen: list[int] = []
    subscriber: mqtt.Client | None = None
    link.start()
    deadline = time.monotonic() + 30
    try:
        while outbox.depth():
            assert time.monotonic() < deadline, f"outbox still holds {outbox.depth()} event(s)"
            if subscriber is None and pump.counters["no_subscribers"] >= 3:
                assert outbox.depth() == 3  # nobody heard them: nothing was deleted
                subscriber = _subscriber(mosquitto, seen)
            try:
                item = inbox.get(timeout=0.05)
                pump.handle_acks([item]) if isinstance(item, Acked) else pump.handle(item)
            except queue.Empty:
                pass
            pump.fill()
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        link.stop()
        if subscriber is not None:
            stop_network_loop(subscriber)
            subscriber.disconnect()
    assert subscriber is not None
    assert seen == [1, 2, 3]
