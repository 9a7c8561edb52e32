"""paho client construction shared by ingest and the monitor channel (MQTT 5, TLS, credentials)."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.config import MqttConfig

log = logging.getLogger(__name__)


def mqtt_client(config: MqttConfig, client_id: str, *, manual_ack: bool) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
        if config.cert_file is not None:
            context.load_cert_chain(str(config.cert_file), str(config.key_file or config.cert_file))
        client.tls_set_context(context)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    # Our callbacks turn every input into a counted error themselves (backend.ingest.guard);
    # this is the last line: an exception escaping a callback is logged by paho instead of ending
    # its network thread (paho's default), which would silently stop the client at every start.
    client.suppress_exceptions = True
    client.enable_logger(logging.getLogger("paho"))
    return client


def connect_properties(session_expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    return props


def network_alive(client: mqtt.Client) -> bool:
    """Whether paho's network thread (``loop_start``) still runs; paho keeps it private."""
    thread = getattr(client, "_thread", None)
    return thread is not None and thread.is_alive()


class BrokerLink:
    """One client's connection to the broker, as health and the journal see it.

    paho's callbacks call ``up``/``down``; each change is logged once (a broker away for an hour
    gives one warning, not one per reconnection attempt), and ``/healthz`` reads ``ok`` and
    ``describe``. ``ready`` is set while the link is up (ingest: subscribed; the channel:
    connected)."""

    def __init__(self, name: str, config: MqttConfig, clock: Callable[[], float] = time.time):
        self.name = name
        self.where = f"{config.host}:{config.port}"
        self.clock = clock
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._since = clock()
        self._why = "not connected yet"
        self._reported = False  # whether the current down state was logged

    def up(self) -> None:
        with self._lock:
            if self.ready.is_set():
                return
            self.ready.set()
            away = self.clock() - self._since
            self._since = self.clock()
            self._why = ""
            self._reported = False
        log.info("%s: connected to the broker %s (after %.0f s)", self.name, self.where, away)

    def down(self, why: str) -> None:
        with self._lock:
            was_up = self.ready.is_set()
            if not was_up and self._reported:
                self._why = why  # already said; keep the latest reason for /healthz
                return
            self.ready.clear()
            if was_up:
                self._since = self.clock()
            self._why = why
            self._reported = True
        verb = "lost" if was_up else "cannot reach"
        log.warning("%s: %s the broker %s: %s", self.name, verb, self.where, why)

    def _on_disconnect(self, _c: object, _u: object, flags: object, rc: object, _p: object) -> None:
        from_server = getattr(flags, "is_disconnect_packet_from_server", False)
        if rc == 0 and not from_server:  # our own disconnect(): stopping, not an outage
            with self._lock:
                self.ready.clear()
                self._since = self.clock()
                self._why = "disconnected on purpose (stopping)"
                self._reported = True
            log.info("%s: disconnected from the broker %s", self.name, self.where)
            return
        self.down(f"disconnected ({rc})")

    def ok(self) -> bool:
        return self.ready.is_set()

    def describe(self) -> str:
        with self._lock:
            seconds = max(0.0, self.clock() - self._since)
            if self.ready.is_set():
                return f"{self.name}: connected to {self.where} for {seconds:.0f} s"
            return f"{self.name}: no broker at {self.where} for {seconds:.0f} s ({self._why})"

    def watch(self, client: mqtt.Client) -> None:
        """Report disconnections and failed connection attempts of ``client``."""
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = lambda _c, _u: self.down("connection failed")
