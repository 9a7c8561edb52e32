"""Monitor sync behind its guard (issue 12): a hostile pushed or local definition is rejected
with a reason on its state topic and counted; the agent's other monitors keep running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.can.dbc import demo_buses, load_vehicle
from agent.errors import MonitorError
from agent.monitors import loading
from agent.monitors.limits import MAX_MONITOR_BYTES
from agent.monitors.loading import FileEntry, read_monitors_file
from agent.uplink import monitor_sync
from agent.uplink.monitor_sync import MonitorSync
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, oil_monitor
from tests.agent.monitors.hostile import deep_parentheses, many_triggers, nested_json, zone_named
from tests.agent.uplink.test_uplink_monitor_sync import RecordingEngine

TOPICS = Topics()
CATALOG = load_vehicle(demo_buses()).catalog

HOSTILE: dict[str, bytes] = {
    "deep-json": nested_json(5000).encode(),
    "surrogate": b'{"label": "\\ud800", "triggerParam": {}}',
    "huge-number": b'{"label": 1' + b"0" * 4000 + b', "triggerParam": {}}',
    "too-many-digits": b'{"label": 1' + b"0" * 5000 + b"}",
    "huge-size": b'{"label": "' + b"x" * (MAX_MONITOR_BYTES + 10) + b'"}',
    "not-utf8": b'{"label": "\xff\xfe"}',
    "infinite": b'{"label": "x", "n": 1e999}',
    "many-triggers": json.dumps(many_triggers(24)).encode(),
    "deep-parens": json.dumps(deep_parentheses(5000)).encode(),
    "zone-europe": json.dumps(zone_named("Europe")).encode(),
}


def _sync(sent: list[tuple[str, bytes]]) -> tuple[MonitorSync, RecordingEngine]:
    engine = RecordingEngine()
    sync = MonitorSync(
        VIN,
        "fleet-1",
        TOPICS,
        catalog=CATALOG,
        engine=engine,
        publish=lambda t, p: sent.append((t, p)),
        clock=lambda: 0.0,
    )
    return sync, engine


def _state(sent: list[tuple[str, bytes]], monitor_id: str) -> dict[str, object]:
    topic = TOPICS.monitor_state(VIN, monitor_id)
    payloads = [p for t, p in sent if t == topic]
    assert payloads, f"no state for {monitor_id}"
    state: dict[str, object] = json.loads(payloads[-1])
    return state


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_pushed_definition_is_rejected_and_the_others_keep_running(name: str) -> None:
    sent: list[tuple[str, bytes]] = []
    sync, engine = _sync(sent)
    good = json.dumps(oil_monitor("120")).encode()
    assert sync.on_message(TOPICS.vehicle_monitor(VIN, "good"), good)
    assert not sync.on_message(TOPICS.vehicle_monitor(VIN, name), HOSTILE[name])
    state = _state(sent, name)
    assert state["state"] == "rejected"
    reasons = state["reasons"]
    assert isinstance(reasons, list) and reasons and all(r["message"] for r in reasons)
    assert all(len(r["message"]) <= 303 for r in reasons)  # quotes of the input are cut
    assert sync.counters["rejected"] == 1 and sync.counters["internal_errors"] == 0
    assert sync.applied() == ["good"] and set(engine.monitors) == {"good"}


def test_reasons_say_what_was_wrong() -> None:
    sent: list[tuple[str, bytes]] = []
    sync, _ = _sync(sent)
    expected = {
        "deep-json": "nests",
        "surrogate": "not valid Unicode",
        "huge-size": "bytes",
        "many-triggers": "needs 1 to 10 triggers",
        "deep-parens": "characters long",
        "zone-europe": "unknown time zone 'Europe'",
    }
    for name, words in expected.items():
        sync.on_message(TOPICS.vehicle_monitor(VIN, name), HOSTILE[name])
        reasons = _state(sent, name)["reasons"]
        assert isinstance(reasons, list)
        assert any(words in r["message"] for r in reasons), (name, reasons)
    assert sync.counters["rejected_input"] == 3  # refused before parsing: depth, Unicode, size


def test_a_bug_met_while_reading_is_caught_counted_and_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[tuple[str, bytes]] = []
    sync, _ = _sync(sent)
    sync.on_message(TOPICS.vehicle_monitor(VIN, "good"), json.dumps(oil_monitor()).encode())

    def broken(*_args: object, **_kw: object) -> None:
        raise KeyError("a bug the fuzzers have not found yet")

    monkeypatch.setattr(monitor_sync, "parse_monitor", broken)
    monkeypatch.setattr(loading, "parse_monitor", broken)
    payload = json.dumps(oil_monitor("99")).encode()
    assert not sync.on_message(TOPICS.fleet_monitor("fleet-1", "other"), payload)
    assert sync.counters["internal_errors"] == 1
    reasons = _state(sent, "other")["reasons"]
    assert reasons == [{"path": "$", "message": "could not be read (KeyError)"}]
    assert not sync.load_local([FileEntry("m.json", oil_monitor("98", id="local"))])
    assert sync.counters["internal_errors"] == 2
    assert sync.applied() == ["good"]


def test_hostile_local_definitions_are_rejected_one_by_one(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes]] = []
    sync, _ = _sync(sent)
    path = tmp_path / "monitors.json"
    items = [
        oil_monitor("120", id="fine"),
        {**many_triggers(24), "id": "wide"},
        {**zone_named("Europe"), "id": "tz"},
        {"id": "odd", "label": "\ud800"},
    ]
    path.write_text(json.dumps(items))
    sync.load_local(read_monitors_file(path))
    assert sync.applied() == ["fine"]
    for monitor_id in ("wide", "tz", "odd"):
        assert _state(sent, monitor_id)["state"] == "rejected"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[" * 5000 + b"]" * 5000, "nests"),
        (b"\xff\xfe[]", "not valid JSON"),
        (b"[{]", "not valid JSON"),
    ],
)
def test_unreadable_monitors_files_are_one_line_monitor_errors(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "monitors.json"
    path.write_bytes(content)
    with pytest.raises(MonitorError, match=words) as caught:
        read_monitors_file(path)
    assert "\n" not in str(caught.value)
