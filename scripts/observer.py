"""An MQTT observer for the demo and the full-chain tests: subscribes (TLS, service account) to
everything under the prefix and keeps what it sees: events, statuses, monitor states."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.paho_compat import stop_network_loop
from scripts.pki import Pki


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retained: bool
    arrived: float  # wall clock

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


class Observer:
    def __init__(self, pki: Pki, port: int, username: str, password: str, prefix: str) -> None:
        self.prefix = prefix
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="edgemon-observer", protocol=mqtt.MQTTv5
        )
        self._client.tls_set(ca_certs=str(pki.ca_file))
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.2, 2)
        # A persistent session: what is published while the observer is away (broker restart)
        # is queued for it, so it witnesses every event.
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
        self._client.connect_async("127.0.0.1", port, clean_start=False, properties=properties)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"{self.prefix}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._seen.append(Seen(msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))

    def seen(self, suffix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if s.topic.endswith(suffix)]

    def events(self) -> list[Seen]:
        return self.seen("/events")

    def close(self) -> None:
        stop_network_loop(self._client)
        self._client.disconnect()
