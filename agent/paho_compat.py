"""Work-arounds for paho-mqtt, shared by the agent's and the backend's MQTT adapters.

paho 2.2's ``loop_stop()`` checks ``client._thread`` and then joins it; after ``disconnect()`` the
network thread ends by itself and clears ``_thread`` in between, so ``loop_stop()`` can raise
``AttributeError: 'NoneType' object has no attribute 'join'`` (seen on a loaded machine in the
broker ACL tests). A thread that already ended leaves nothing to stop.
"""

from __future__ import annotations

import contextlib

import paho.mqtt.client as mqtt


def stop_network_loop(client: mqtt.Client) -> None:
    """``client.loop_stop()``, tolerating the race above."""
    with contextlib.suppress(AttributeError):
        client.loop_stop()
