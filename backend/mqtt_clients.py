"""paho client construction shared by ingest and the monitor channel (MQTT 5, TLS, credentials)."""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from backend.config import MqttConfig


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
