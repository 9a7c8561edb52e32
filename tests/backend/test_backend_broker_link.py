"""``BrokerLink``: one log line per change of a broker connection, whatever paho reports in
between; what ``/healthz`` says about it. The clock is injected."""

from __future__ import annotations

import logging

import pytest

from backend.config import MqttConfig
from backend.mqtt_clients import BrokerLink
from tests.backend.conftest import ManualClock


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "backend.mqtt_clients"]


def test_each_change_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="backend.mqtt_clients")
    clock = ManualClock()
    link = BrokerLink("ingest", MqttConfig(host="broker", port=8884), clock)
    for _ in range(3):  # never there: said once, the latest reason kept
        link.down("connection failed")
    assert not link.ok()
    assert link.describe() == "ingest: no broker at broker:8884 for 0 s (connection failed)"
    clock.advance(5)
    link.up()
    link.up()
    assert link.ok() and link.describe() == "ingest: connected to broker:8884 for 0 s"
    clock.advance(60)
    link.down("disconnected (Unspecified error)")
    clock.advance(3)
    link.down("connection failed")
    link.down("connection refused: Not authorized")
    assert link.describe() == (
        "ingest: no broker at broker:8884 for 3 s (connection refused: Not authorized)"
    )
    clock.advance(7)
    link.up()
    assert _lines(caplog) == [
        "ingest: cannot reach the broker broker:8884: connection failed",
        "ingest: connected to the broker broker:8884 (after 5 s)",
        "ingest: lost the broker broker:8884: disconnected (Unspecified error)",
        "ingest: connected to the broker broker:8884 (after 10 s)",
    ]


def test_our_own_disconnect_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    class Flags:
        is_disconnect_packet_from_server = False

    caplog.set_level(logging.INFO, logger="backend.mqtt_clients")
    link = BrokerLink("monitor channel", MqttConfig(), ManualClock())
    link.up()
    link._on_disconnect(None, None, Flags(), 0, None)
    assert not link.ok()
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    Flags.is_disconnect_packet_from_server = True  # the broker said goodbye: an outage
    link.up()
    link._on_disconnect(None, None, Flags(), 0, None)
    assert caplog.records[-1].levelno == logging.WARNING
