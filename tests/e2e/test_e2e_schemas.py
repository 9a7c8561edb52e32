"""The JSON Schemas in docs/schemas describe the real messages: every kind produced by the real
code validates, and typical mistakes do not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from agent.can.dbc import demo_buses, load_vehicle
from agent.model import Event, EventValue, Extension
from agent.monitors.model import parse_monitor
from agent.wire import event_to_json, monitor_state_to_json, status_to_json, uuid7
from tests.e2e.schemas import KINDS, errors, schema

DATA = Path(__file__).resolve().parents[1] / "data"
AT = datetime(2026, 11, 23, 21, 30, 5, 125000, tzinfo=UTC)


def _events() -> list[Event]:
    bare = Event(uuid7(1_790_000_000_000), 0, "VIN1", None, "m1", AT, False)
    full = Event(
        event_id=uuid7(1_790_000_000_001),
        seq=42,
        vin="VF3ABCDEF12345678",
        fleet_id="fleet-1",
        monitor_id="oil-hot",
        event_date=AT,
        refresh=True,
        values=(
            EventValue("vehicle.engines.thermic.oil.temp", "131.5", "129"),
            EventValue("vehicle.kinetic.speed", "52"),
        ),
        extensions=(
            Extension("vehicle.position", {"latitude": 48.85, "longitude": 2.35}),
            Extension(
                "vehicle.doorsState", {"opening": [{"identifier": "Driver", "state": "Open"}]}
            ),
        ),
        labels={"clock": "gps"},
    )
    return [bare, full]


@pytest.mark.parametrize("kind", KINDS)
def test_schema_files_are_valid_draft_2020_12(kind: str) -> None:
    loaded = schema(kind)
    Draft202012Validator.check_schema(loaded)
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("event", _events(), ids=["bare", "full"])
def test_real_events_validate(event: Event) -> None:
    assert errors("event", json.loads(event_to_json(event))) == []


def _status(online: bool) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        status_to_json(
            vin="VIN1",
            online=online,
            at=AT,
            version="0.1.0" if online else "",
            outbox_depth=3,
            monitors=["b", "a"],
            counters={"frames": 10, "skipped_unknown_id": 1},
            clock="gps",
        )
    )
    return loaded


@pytest.mark.parametrize("online", [True, False])
def test_real_status_validates(online: bool) -> None:
    assert errors("status", _status(online)) == []


def test_real_monitor_states_validate() -> None:
    applied = monitor_state_to_json(monitor_id="m1", applied=True, at=AT, definition_hash="ab" * 32)
    rejected = monitor_state_to_json(
        monitor_id="m2",
        applied=False,
        at=AT,
        reasons=[{"path": "$.triggerParam.boolExp", "message": "always true"}],
    )
    assert errors("monitor-state", json.loads(applied)) == []
    assert errors("monitor-state", json.loads(rejected)) == []


def _event_dict() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(event_to_json(_events()[1]))
    return loaded


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d.pop("eventId"), "$"),
        (lambda d: d.update(schema="edgemon.event/2"), "schema"),
        (lambda d: d.update(eventDate="2026-11-23T21:30:05"), "eventDate"),
        (lambda d: d.update(seq=-1), "seq"),
        (lambda d: d.update(vin="has/slash"), "vin"),
        (lambda d: d["values"][0]["value"]["body"].update(literalValue=131), "values/0"),
        (lambda d: d["extensions"][0].update(body=[1]), "extensions/0"),
        (lambda d: d.update(surprise=1), "$"),
    ],
)
def test_broken_events_are_rejected(mutate: Any, where: str) -> None:
    message = _event_dict()
    mutate(message)
    found = errors("event", message)
    assert found, "the schema accepted a broken event"
    assert any(line.startswith(where) for line in found), found


def test_rejected_state_needs_a_reason() -> None:
    message = json.loads(monitor_state_to_json(monitor_id="m", applied=False, at=AT))
    assert errors("monitor-state", message)


def test_status_counters_must_be_integers() -> None:
    message = _status(True)
    message["counters"]["frames"] = "ten"
    assert errors("status", message)


def test_webhook_schema_reads_the_stellantis_example_shape() -> None:
    event = _event_dict()
    body = {
        "monitorId": "oil-hot",
        "attributes": [{"key": "vin", "value": "VF3ABCDEF12345678"}],
        "events": [
            {
                "fleetId": event["fleetId"],
                "vin": event["vin"],
                "eventDate": event["eventDate"],
                "values": event["values"],
                "extensions": event["extensions"],
                "refresh": event["refresh"],
            }
        ],
    }
    assert errors("webhook", body) == []
    body["events"] = []
    assert errors("webhook", body)


# A definition in the style of the published docs (reference §6, §7): circle instead of place,
# occurence as a bare day list, maxRetryNumber, attributres, callback without the webhook wrapper.
QUIRKY = {
    "label": "Heatwave",
    "attributres": [{"type": "Body", "key": "team", "value": "ops"}],
    "subscribeParam": {
        "refreshEvent": 3600,
        "retryPolicy": {"policy": "Bounded", "maxRetryNumber": 5, "retryDelay": 60},
        "batchNotify": {"size": 10, "timeWindow": 30},
        "callback": {"name": "ops", "target": "https://example.com/hooks", "attributes": []},
    },
    "extendedEventParam": ["environment.air.temp"],
    "triggerParam": {
        "triggers": [
            {
                "name": "paris",
                "zone": {
                    "transition": "Out",
                    "circle": {"radius": 20, "center": {"latitude": 48.85, "longitude": 2.35}},
                },
            },
            {
                "name": "afternoon",
                "time": {
                    "timeZone": "Europe/Paris",
                    "times": [
                        {
                            "recurrence": "Daily",
                            "start": "PT14H",
                            "duration": "PT4H",
                            "occurence": ["Mon", "Tue"],
                        }
                    ],
                },
            },
            {
                "name": "hot",
                "data": {"data": "environment.air.temp", "op": "greaterThan", "value": ["35"]},
            },
        ],
        "boolExp": "(paris & afternoon & hot",
    },
}


def _monitors() -> list[tuple[str, dict[str, Any]]]:
    from scripts import demo_monitors

    target = "https://127.0.0.1:8443/hooks"
    found = [
        (make.__name__, make(target))
        for make in (
            demo_monitors.leaving_depot_at_night,
            demo_monitors.oil_hot_while_driving,
            demo_monitors.door_opened,
        )
    ]
    golden = json.loads((DATA / "drive" / "monitors.json").read_text())
    found += [(str(m.get("id")), m) for m in golden]
    return [*found, ("quirky", QUIRKY)]


@pytest.mark.parametrize(("name", "definition"), _monitors(), ids=lambda v: str(v)[:30])
def test_monitor_definitions_validate_and_parse(name: str, definition: dict[str, Any]) -> None:
    assert errors("monitor", definition) == []
    catalog = load_vehicle(demo_buses()).catalog  # as the agent checks them
    parsed = parse_monitor(definition, monitor_id="m1", catalog=catalog)
    assert parsed.problems == [], name  # the schema and the real parser agree on these


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("triggerParam"),
        lambda d: d["triggerParam"]["triggers"][0].update(data={"data": "x", "op": "equalsTo"}),
        lambda d: d["triggerParam"]["triggers"][0]["zone"].update(transition="Inside"),
        lambda d: d["triggerParam"]["triggers"][2]["data"].update(op="contains"),
        lambda d: d["subscribeParam"]["retryPolicy"].update(policy="Sometimes"),
        lambda d: d["triggerParam"].update(triggers=[]),
    ],
)
def test_broken_monitor_definitions_are_rejected(mutate: Any) -> None:
    definition = json.loads(json.dumps(QUIRKY))
    mutate(definition)
    assert errors("monitor", definition)
