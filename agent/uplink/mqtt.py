"""MQTT: the paho adapter (``MqttLink``); the outbox pump is ``agent.uplink.pump``.

Threads. paho runs its network loop in its own thread, and a supervisor thread of ours connects,
waits and reconnects. Neither touches the outbox: every callback only turns paho's arguments into
our own ``LinkEvent`` values and hands them to ``sink`` (the main loop's queue). The main loop
feeds them to ``agent.uplink.pump.EventPump.handle``. paho types never leave this module.

Sessions. Each connection uses a fresh paho client and a clean session: the outbox is the durable
store, so after every (re)connect the pump resends every unacknowledged event from the oldest
(``seq`` order). A repeat carries the same event id; the backend de-duplicates. PUBACKs of an old
connection are ignored (``generation``).

Reconnect: exponential backoff from ``reconnect_min`` to ``reconnect_max`` seconds with "equal
jitter" (a random delay between half and all of the step; ``agent.backoff``), reset after a
successful CONNACK.

Refusals: an MQTT 5 broker answers a publish it refuses (ACL) with a failure reason code in the
PUBACK; the event is counted (``broker_rejected``), logged and kept in the outbox, to be sent again
after the next reconnect. An MQTT 3.1.1 broker cannot say so: it acknowledges and drops it.

Latency: paho leaves Nagle's algorithm on; ``TCP_NODELAY`` is set on the socket right after the
TCP/TLS connect. The pump keeps at most ``window`` events in flight (paho's ``max_inflight`` is set
to the same value): paho scans its in-flight table on each acknowledgement, so a large window costs
more than it gains (see docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.backoff import Backoff
from agent.config import MqttConfig
from agent.errors import ConfigError, Problem
from agent.paho_compat import stop_network_loop

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK reason code (0x10)


# -- what crosses from paho's threads to the main loop ------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    generation: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class Acked:
    generation: int
    mid: int
    ok: bool
    reason: str
    no_subscribers: bool = False  # MQTT 5 reason 16: accepted, but nobody received it


@dataclass(frozen=True, slots=True)
class Received:
    """An incoming message, converted on arrival."""

    topic: str
    payload: bytes
    retained: bool


LinkEvent = Connected | Disconnected | ConnectFailed | Acked | Received


def describe_connect_error(exc: BaseException, host: str, port: int) -> str:
    """One clear line for a failed TCP/TLS connect."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate of {host}:{port} not trusted: {exc.verify_message}"
            " (check mqtt.ca_file)"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection to {host}:{port} refused (broker down?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"connection to {host}:{port} timed out"
    if isinstance(exc, OSError):
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    return f"cannot connect to {host}:{port}: {exc}"


def build_tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The client TLS context; unreadable files are a ConfigError naming the setting."""
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([Problem("$.mqtt.ca_file", f"cannot load CA bundle: {exc}")]) from exc
    if config.cert_file is not None and config.key_file is not None:
        try:
            context.load_cert_chain(str(config.cert_file), str(config.key_file))
        except (OSError, ssl.SSLError) as exc:
            problem = Problem("$.mqtt.cert_file", f"cannot load client certificate/key: {exc}")
            raise ConfigError([problem]) from exc
    return context


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes


class MqttLink:
    """One logical connection to the broker, reconnected forever until ``stop``."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        sink: Callable[[LinkEvent], None],
        *,
        subscriptions: tuple[str, ...] = (),
        will: Will | Callable[[], Will] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._sink = sink
        self.subscriptions = subscriptions
        self.will = will
        self._rng = rng or random.Random()
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self._tls = build_tls_context(config) if config.tls else None
        self._client: mqtt.Client | None = None
        self._generation = 0
        self._connected = threading.Event()
        self._session_over = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: dict[str, int] = {"connects": 0, "connect_failures": 0, "disconnects": 0}
        self.counters |= {"published": 0, "received": 0, "skipped_bad_topic": 0}
        self.last_error = ""
        self._last_connect_ok = False
        self._refusal = ""

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 2.0) -> None:
        """Publish ``final`` (retained, e.g. the offline status) when connected, then disconnect."""
        self._stopping.set()
        client = self._client
        if client is not None and self.connected:
            if final is not None:
                info = client.publish(final[0], final[1], qos=1, retain=True)
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    try:
                        info.wait_for_publish(timeout)
                    except (RuntimeError, ValueError):
                        log.debug("final status not acknowledged before stop")
            client.disconnect()
        self._session_over.set()
        if self._thread is not None:
            self._thread.join(timeout + 3.0)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        """Queue one message on the current connection; its message id, or -1 when offline."""
        client = self._client
        if client is None or not self.connected:
            return -1
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return -1
        self.counters["published"] += 1
        return int(info.mid)

    # -- supervisor thread -----------------------------------------------------------------------

    def _supervise(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            self._generation += 1
            client = self._new_client(self._generation)
            # paho may call on_disconnect inside connect() (CONNECT written to a closed socket)
            self._session_over.clear()
            try:
                self._connect(client)
            except (OSError, ValueError) as exc:
                reason = describe_connect_error(exc, self.config.host, self.config.port)
                attempt = self._connect_failed(reason, attempt)
                continue
            self._run_session(client)
            if self._stopping.is_set():
                break
            if not self._last_connect_ok:  # refused, or closed before CONNACK (mTLS refusal)
                attempt = self._connect_failed(self._refusal, attempt)
                continue
            attempt = 0
            self._stopping.wait(self._backoff.delay(attempt, self._rng.random()))

    def _run_session(self, client: mqtt.Client) -> None:
        self._client = client
        client.loop_start()
        # a broker that accepts TCP but never answers CONNECT must not hold us forever
        connack_deadline = time.monotonic() + self.config.connack_timeout
        while not self._session_over.wait(0.5):
            if self._stopping.is_set() and not self.connected:
                break
            if not self._last_connect_ok and time.monotonic() > connack_deadline:
                self._refusal = f"no CONNACK from {self.config.host}:{self.config.port}"
                client.disconnect()
                break
        stop_network_loop(client)
        self._connected.clear()

    def _connect_failed(self, reason: str, attempt: int) -> int:
        self.counters["connect_failures"] += 1
        delay = self._backoff.delay(attempt, self._rng.random())
        if reason != self.last_error or attempt % 10 == 0:
            # an unreachable broker is routine in a car (no coverage); a refusal is a setup error
            refused = any(word in reason for word in ("broker refused", "TLS", "certificate"))
            level = logging.ERROR if refused else logging.WARNING
            log.log(level, "MQTT: %s; retrying in %.1f s", reason, delay)
        self.last_error = reason
        self._sink(ConnectFailed(reason, delay))
        self._stopping.wait(delay)
        return attempt + 1

    def _connect(self, client: mqtt.Client) -> None:
        cfg = self.config
        self._last_connect_ok = False
        self._refusal = f"connection to {cfg.host}:{cfg.port} closed before CONNACK"
        if cfg.tls and cfg.cert_file is not None:  # a TLS broker drops a refused client cert so
            self._refusal += " (client certificate refused?)"
        if cfg.protocol == "5":
            client.connect(cfg.host, cfg.port, cfg.keepalive, clean_start=True)
        else:
            client.connect(cfg.host, cfg.port, cfg.keepalive)
        sock = client.socket()
        if cfg.tcp_nodelay and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _new_client(self, generation: int) -> mqtt.Client:
        cfg = self.config
        five = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if five else mqtt.MQTTv311,
            clean_session=None if five else True,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if self.will is not None:  # a callable is asked again at each connect (fresh "at")
            will = self.will() if callable(self.will) else self.will
            client.will_set(will.topic, will.payload, qos=1, retain=True)
        client.on_connect = self._on_connect_for(generation)
        client.on_disconnect = self._on_disconnect_for(generation)
        client.on_publish = self._on_publish_for(generation)
        client.on_message = self._on_message
        return client

    # -- paho callbacks (paho's thread): convert and hand over, nothing else --------------------

    def _on_connect_for(self, generation: int) -> Callable[..., None]:
        def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            if rc.is_failure:
                self._refusal = f"broker refused the connection: {rc}"
                return  # paho disconnects; on_disconnect ends the session
            self._last_connect_ok = True
            self.counters["connects"] += 1
            if self.subscriptions:
                client.subscribe([(topic, 1) for topic in self.subscriptions])
            self._connected.set()
            log.info("MQTT: connected to %s:%d", self.config.host, self.config.port)
            self._sink(Connected(generation))

        return on_connect

    def _on_disconnect_for(self, generation: int) -> Callable[..., None]:
        def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
            was_connected = self._connected.is_set()
            self._connected.clear()
            self.counters["disconnects"] += 1
            reason = str(rc)
            if was_connected and not self._stopping.is_set():
                log.warning("MQTT: disconnected (%s)", reason)
            self._sink(Disconnected(generation, reason))
            self._session_over.set()

        return on_disconnect

    def _on_publish_for(self, generation: int) -> Callable[..., None]:
        def on_publish(_c: mqtt.Client, _u: Any, mid: int, rc: Any, _p: Any) -> None:
            failed = bool(getattr(rc, "is_failure", False))
            # Reason 16 is not a failure for paho, but the event reached nobody: mosquitto does
            # not restore shared subscriptions after its own restart, so until the backend
            # subscribes again "accepted" would mean "lost".
            nobody = getattr(rc, "value", 0) == NO_MATCHING_SUBSCRIBERS
            self._sink(Acked(generation, mid, not (failed or nobody), str(rc), nobody))

        return on_publish

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.counters["skipped_bad_topic"] += 1
            return
        self.counters["received"] += 1
        self._sink(Received(topic, bytes(message.payload), bool(message.retain)))
