"""Ingest against a real mosquitto: events become signed HTTPS webhooks; QoS 1 repeats are
delivered once; malformed and VIN-mismatched messages are counted and acknowledged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from backend.app import Backend
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    SECRET,
    VIN,
    BackendThread,
    add_monitor,
    load,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()


def _backend(tmp_path: Path, broker: Mosquitto, ca: CertAuthority, client_id: str) -> Backend:
    config = load(
        tmp_path,
        mqtt={"host": broker.host, "port": broker.port, "client_id": client_id},
        webhooks={"ca_bundle": str(ca.ca_file)},
    )
    return Backend(config, frozenset({"ingest", "dispatcher"}))


def _literal(body: bytes) -> str:
    value: str = json.loads(body)["events"][0]["values"][0]["value"]["body"]["literalValue"]
    return value


def test_events_become_webhooks_and_repeats_go_out_once(
    tmp_path: Path,
    mosquitto: Mosquitto,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers()
    store = SqliteStore(tmp_path / "backend.db")
    mid = add_monitor(store, monitor_definition(rx.url + "/in"))
    running = BackendThread(_backend(tmp_path, mosquitto, test_ca, "ingest-a")).start()
    client = publisher(mosquitto)
    try:
        event = make_event(mid, value="150")
        for _ in range(3):  # QoS 1 repeats / an agent re-publishing after a lost PUBACK
            publish(client, TOPICS.events(VIN), event_to_json(event))
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="sentinel")))
        requests = sorted(rx.wait_for(2), key=lambda r: _literal(r.body))
        assert [_literal(r.body) for r in requests] == ["150", "sentinel"]  # sent concurrently
        body = Webhook(SECRET).verify(requests[0].body, requests[0].headers)
        assert body["monitorId"] == mid and body["events"][0]["vin"] == VIN
        metrics = running.backend.metrics
        assert metrics.events._value.get() == 2
        assert metrics.duplicates._value.get() == 2
    finally:
        stop_network_loop(client)
        client.disconnect()
        running.stop()
        store.close()


def test_bad_messages_are_counted_and_acknowledged(
    tmp_path: Path,
    mosquitto: Mosquitto,
    test_ca: CertAuthority,
    receivers: Callable[..., Receiver],
) -> None:
    rx = receivers()
    store = SqliteStore(tmp_path / "backend.db")
    mid = add_monitor(store, monitor_definition(rx.url))
    running = BackendThread(_backend(tmp_path, mosquitto, test_ca, "ingest-b")).start()
    client = publisher(mosquitto)
    try:
        publish(client, TOPICS.events(VIN), b"\xff not json")
        publish(client, TOPICS.events(VIN), b'{"schema": "edgemon.event/1"}')
        publish(client, TOPICS.events("OTHERVIN000000001"), event_to_json(make_event(mid)))
        publish(client, TOPICS.events(VIN), event_to_json(make_event("unknown-monitor")))
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="ok")))
        assert [_literal(r.body) for r in rx.wait_for(1)] == ["ok"]
        skipped = running.backend.metrics.skipped
        assert skipped.labels(reason="not_utf8")._value.get() == 1
        assert skipped.labels(reason="malformed")._value.get() == 1
        assert skipped.labels(reason="vin_mismatch")._value.get() == 1
        assert skipped.labels(reason="unknown_monitor")._value.get() == 1
    finally:
        running.stop()
    # Same client id, same broker session: nothing unacknowledged comes back.
    again = BackendThread(_backend(tmp_path, mosquitto, test_ca, "ingest-b")).start()
    try:
        publish(client, TOPICS.events(VIN), event_to_json(make_event(mid, value="after")))
        assert sorted(_literal(r.body) for r in rx.wait_for(2)) == ["after", "ok"]
        skipped = again.backend.metrics.skipped
        assert skipped.labels(reason="malformed")._value.get() == 0
        assert again.backend.metrics.events._value.get() == 1
    finally:
        stop_network_loop(client)
        client.disconnect()
        again.stop()
        store.close()
