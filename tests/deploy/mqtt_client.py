"""A small synchronous MQTT client for the broker tests: connect (certificate or password),
subscribe and publish waiting for the broker's answer (reason codes kept), collect messages."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.paho_compat import stop_network_loop

WAIT = 20.0  # generous: the machine is shared; only a broker that never answers hits it


OK = (0, 16)  # PUBACK "success" and "no matching subscribers": both accepted by the broker


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retained: bool
    subscriptions: tuple[int, ...]  # MQTT 5 subscription identifiers it was delivered for


class Refused(Exception):
    """The broker (or its TLS layer) did not let this client in."""


class Client:
    def __init__(
        self,
        port: int,
        ca_file: Path,
        *,
        cert: tuple[Path, Path] | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: int = mqtt.MQTTv5,
    ) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self._answers: dict[int, list[int]] = {}
        self._answered = threading.Condition()
        self._connack: queue.Queue[int] = queue.Queue()
        self.disconnected = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=protocol)
        self._client.tls_set(
            ca_certs=str(ca_file),
            certfile=str(cert[0]) if cert else None,
            keyfile=str(cert[1]) if cert else None,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = lambda _c, _u, _f, rc, _p=None: self._connack.put(rc.value)
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_answer
        self._client.on_publish = self._on_answer
        try:
            self._client.connect("127.0.0.1", port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise Refused(f"connect: {exc}") from exc
        self._client.loop_start()
        try:
            code = self._connack.get(timeout=WAIT)
        except queue.Empty:
            self.close()
            raise Refused("no CONNACK") from None
        if code != 0:
            self.close()
            raise Refused(f"CONNACK reason {code}")

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected.set()
        self._connack.put(-1)  # dropped before (or instead of) a CONNACK: a TLS alert, say

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        ids = getattr(msg.properties, "SubscriptionIdentifier", None) or []
        ids = ids if isinstance(ids, list) else [ids]
        self.messages.put(Message(msg.topic, bytes(msg.payload), bool(msg.retain), tuple(ids)))

    def _on_answer(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any = None) -> None:
        values = [c.value for c in codes] if isinstance(codes, list) else [codes.value]
        with self._answered:
            self._answers[mid] = values
            self._answered.notify_all()

    def _answer(self, mid: int) -> list[int]:
        with self._answered:
            if not self._answered.wait_for(lambda: mid in self._answers, timeout=WAIT):
                raise TimeoutError(f"no answer from the broker to packet {mid}")
            return self._answers.pop(mid)

    def subscribe(self, topic: str, ident: int | None = None) -> int:
        """The SUBACK reason code (1 = granted QoS 1). mosquitto 2.0 grants any subscription
        and checks read access on each message it would deliver. ``ident``: an MQTT 5
        subscription identifier, which the broker puts on every message delivered for it."""
        properties = None
        if ident is not None:
            properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            properties.SubscriptionIdentifier = ident
        _rc, mid = self._client.subscribe(topic, qos=1, properties=properties)
        assert mid is not None
        return self._answer(mid)[0]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """The PUBACK reason code (0 on MQTT 3.1.1, which has none)."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        return self._answer(info.mid)[0]

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        self._client.publish(topic, payload, qos=1)

    def receive_until(self, topic: str = "", ident: int | None = None) -> list[Message]:
        """Every message up to and including the first on ``topic`` (or delivered for the
        subscription ``ident``): a sentinel that comes last, since the broker keeps one
        publisher's order and sends a subscription's retained messages right after its SUBACK,
        so what was not seen by then never comes."""
        got: list[Message] = []
        deadline = time.monotonic() + WAIT

        def last_is_sentinel() -> bool:
            if not got:
                return False
            return ident in got[-1].subscriptions if ident is not None else got[-1].topic == topic

        while not last_is_sentinel():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"nothing on {topic}; got {[m.topic for m in got]}")
            try:
                got.append(self.messages.get(timeout=remaining))
            except queue.Empty:
                continue
        return got

    def close(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)
