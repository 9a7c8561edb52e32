"""agent.uplink.monitor_sync: layers merge by id, bad definitions are rejected with every reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.can.dbc import demo_buses, load_vehicle
from agent.errors import MonitorError
from agent.monitors.loading import FileEntry, read_monitors_file
from agent.monitors.model import Monitor
from agent.uplink.monitor_sync import MonitorSync
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, oil_monitor

TOPICS = Topics()
CATALOG = load_vehicle(demo_buses()).catalog


class RecordingEngine:
    def __init__(self) -> None:
        self.monitors: dict[str, Monitor] = {}
        self.calls: list[str] = []

    def set_monitor(self, monitor: Monitor) -> None:
        self.monitors[monitor.id] = monitor
        self.calls.append(f"set {monitor.id}")

    def remove_monitor(self, monitor_id: str, *, forget: bool = True) -> None:
        self.monitors.pop(monitor_id, None)
        self.calls.append(f"remove {monitor_id}" + ("" if forget else " (kept state)"))


@pytest.fixture
def parts() -> tuple[MonitorSync, RecordingEngine, list[tuple[str, bytes]]]:
    engine = RecordingEngine()
    sent: list[tuple[str, bytes]] = []
    sync = MonitorSync(
        VIN,
        "fleet-1",
        TOPICS,
        catalog=CATALOG,
        engine=engine,
        publish=lambda t, p: sent.append((t, p)),
        clock=lambda: 0.0,
    )
    return sync, engine, sent


def _push(sync: MonitorSync, layer: str, monitor_id: str, body: object) -> bool:
    topic = (
        TOPICS.vehicle_monitor(VIN, monitor_id)
        if layer == "vehicle"
        else TOPICS.fleet_monitor("fleet-1", monitor_id)
    )
    payload = b"" if body is None else json.dumps(body).encode()
    return sync.on_message(topic, payload)


def _state(sent: list[tuple[str, bytes]], monitor_id: str) -> dict[str, object] | None:
    for topic, payload in reversed(sent):
        if topic == TOPICS.monitor_state(VIN, monitor_id):
            return json.loads(payload) if payload else None
    raise AssertionError(f"no state for {monitor_id}")


def test_subscriptions_cover_vehicle_and_fleet(parts: tuple[MonitorSync, ...]) -> None:
    sync = parts[0]
    assert sync.subscriptions() == (
        f"edgemon/v1/vehicles/{VIN}/monitors/+",
        "edgemon/v1/fleets/fleet-1/monitors/+",
    )


def test_apply_replace_delete(parts) -> None:  # type: ignore[no-untyped-def]
    sync, engine, sent = parts
    assert _push(sync, "vehicle", "oil", oil_monitor("130"))
    state = _state(sent, "oil")
    assert state is not None and state["state"] == "applied" and state["hash"]
    assert engine.monitors["oil"].label == "oil above 130"
    assert not _push(sync, "vehicle", "oil", oil_monitor("130"))  # redelivered retained: no-op
    assert _push(sync, "vehicle", "oil", oil_monitor("120"))
    assert engine.monitors["oil"].label == "oil above 120"
    assert _push(sync, "vehicle", "oil", None)
    assert "oil" not in engine.monitors
    assert _state(sent, "oil") is None  # retained state cleared
    assert sync.applied() == []


def test_bad_definition_rejected_with_every_reason_others_keep_running(parts) -> None:  # type: ignore[no-untyped-def]
    sync, engine, sent = parts
    _push(sync, "vehicle", "good", oil_monitor())
    bad = oil_monitor()
    bad["triggerParam"]["triggers"][0]["data"]["data"] = "vehicle.nope"
    bad["triggerParam"]["boolExp"] = "oil & !oil"
    assert not _push(sync, "vehicle", "bad", bad)
    state = _state(sent, "bad")
    assert state is not None and state["state"] == "rejected"
    paths = {r["path"] for r in state["reasons"]}  # type: ignore[attr-defined]
    assert paths == {"$.triggerParam.triggers[0].data.data", "$.triggerParam.boolExp"}
    assert set(engine.monitors) == {"good"}
    assert not sync.on_message(TOPICS.vehicle_monitor(VIN, "junk"), b"{not json")
    assert _state(sent, "junk")["state"] == "rejected"  # type: ignore[index]


def test_bad_replacement_keeps_the_previous_definition(parts) -> None:  # type: ignore[no-untyped-def]
    sync, engine, sent = parts
    _push(sync, "vehicle", "oil", oil_monitor("130"))
    _push(sync, "vehicle", "oil", {"label": "broken"})
    assert _state(sent, "oil")["state"] == "rejected"  # type: ignore[index]
    assert engine.monitors["oil"].label == "oil above 130"
    _push(sync, "vehicle", "oil", oil_monitor("130"))  # the good one again: reported applied
    assert _state(sent, "oil")["state"] == "applied"  # type: ignore[index]


def test_vehicle_over_fleet_over_local(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sync, engine, _ = parts
    file = tmp_path / "monitors.json"
    file.write_text(json.dumps([oil_monitor("100", id="oil")]))
    assert sync.load_local(read_monitors_file(file))
    assert engine.monitors["oil"].label == "oil above 100"
    _push(sync, "fleet", "oil", oil_monitor("110"))
    assert engine.monitors["oil"].label == "oil above 110"
    _push(sync, "vehicle", "oil", oil_monitor("120"))
    assert engine.monitors["oil"].label == "oil above 120"
    _push(sync, "fleet", "oil", oil_monitor("115"))  # shadowed by the vehicle layer
    assert engine.monitors["oil"].label == "oil above 120"
    _push(sync, "vehicle", "oil", None)
    assert engine.monitors["oil"].label == "oil above 115"
    _push(sync, "fleet", "oil", None)
    assert engine.monitors["oil"].label == "oil above 100"
    assert sync.load_local([])  # SIGHUP with an emptied file
    assert engine.monitors == {}


def test_paused_monitor_is_handed_over_paused(parts) -> None:  # type: ignore[no-untyped-def]
    sync, engine, sent = parts
    _push(sync, "vehicle", "oil", oil_monitor())
    _push(sync, "vehicle", "oil", oil_monitor(status="Paused"))
    assert engine.monitors["oil"].paused
    assert sync.applied() == ["oil"]
    assert _state(sent, "oil")["state"] == "applied"  # type: ignore[index]
    _push(sync, "vehicle", "oil", oil_monitor(status="Running"))
    assert not engine.monitors["oil"].paused


def test_foreign_topics_are_counted(parts) -> None:  # type: ignore[no-untyped-def]
    sync = parts[0]
    assert not sync.on_message("edgemon/v1/vehicles/OTHER/monitors/x", b"{}")
    assert sync.counters["skipped_foreign_topic"] == 1


def test_unreadable_monitors_file(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="not valid JSON"):
        (tmp_path / "m.json").write_text("{")
        read_monitors_file(tmp_path / "m.json")


def test_monitors_deleted_while_offline_are_dropped_after_reconnect(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sync, engine, sent = parts
    sync.load_local([FileEntry("m.json", oil_monitor("100", id="local-only"))])
    _push(sync, "vehicle", "kept", oil_monitor("130"))
    _push(sync, "fleet", "gone", oil_monitor("131"))
    assert not sync.reconcile()  # nothing to compare before a connection
    sync.on_connected()
    _push(sync, "vehicle", "kept", oil_monitor("130"))  # the broker re-delivers what it retains
    assert sync.reconcile()
    assert set(engine.monitors) == {"kept", "local-only"}
    assert "remove gone (kept state)" in engine.calls
    assert _state(sent, "gone") is None
    assert sync.counters["removed_not_retained"] == 1
    assert not sync.reconcile()  # once per connection


def test_the_stripped_definition_the_backend_pushes_is_applied(parts) -> None:  # type: ignore[no-untyped-def]
    """The backend keeps targets, attributes and retry policies (issue 12, finding 3): what
    arrives holds only what the vehicle evaluates, and a delivery part the vehicle cannot judge
    (no callback at all, or one the backend would refuse) never stops a monitor here."""
    from backend.monitor_channel import monitor_payload
    from backend.store.records import MonitorRecord

    sync, engine, sent = parts
    full = oil_monitor("140", extendedEventParam=["vehicle.position"])
    full["subscribeParam"] |= {
        "refreshEvent": 300,
        "retryPolicy": {"policy": "Always", "retryDelay": 60},
        "callback": {
            "webhook": {
                "target": "https://customer.example/hook",
                "name": "h",
                "attributes": [{"type": "Header", "key": "Authorization", "value": "Bearer s3"}],
            }
        },
    }
    record = MonitorRecord("pushed", "fleet", "fleet-1", full, "Running", 0.0, 0.0)
    payload = monitor_payload(record)
    assert b"customer.example" not in payload and b"Bearer" not in payload
    assert sync.on_message(TOPICS.fleet_monitor("fleet-1", "pushed"), payload)
    applied = engine.monitors["pushed"]
    assert applied.label == "oil above 140" and applied.subscribe.refresh_event == 300
    assert applied.extended == ("vehicle.position",)
    assert applied.subscribe.webhook is None
    state = _state(sent, "pushed")
    assert state is not None and state["state"] == "applied"
    odd = oil_monitor("150")
    odd["subscribeParam"]["callback"]["webhook"]["target"] = "ftp://not-for-the-vehicle"
    assert _push(sync, "vehicle", "odd", odd)
    assert engine.monitors["odd"].label == "oil above 150"
