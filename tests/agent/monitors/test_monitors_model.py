"""parse_monitor: the Stellantis shapes and quirks, every problem at once with its path."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.monitors.model import (
    Attribute,
    Circle,
    DataTrigger,
    RetryPolicy,
    TimeTrigger,
    ZoneTrigger,
    loads_monitor,
    monitor_hash,
    parse_monitor,
)
from tests.agent.monitors.monitor_support import FakeCatalog

# The docs' Heatwave example, with its quirks (reference §6, §7): `circle`, `attributres`,
# `maxRetryNumber`, callback without the webhook wrapper, an unbalanced boolExp, a bare
# occurence day array, `$Vin`.
HEATWAVE: dict[str, Any] = {
    "label": "Heatwave",
    "subscribeParam": {
        "refreshEvent": 3600,
        "retryPolicy": {"policy": "Bounded", "maxRetryNumber": 5, "retryDelay": 30},
        "batchNotify": {"size": 10},
        "callback": {
            "target": "https://example.com/hook",
            "name": "heat",
            "attributres": [
                {"type": "Header", "key": "X-Vehicle", "value": "$Vin"},
                {"type": "Body", "key": "monitor", "value": "$MONITORID"},
                {"type": "Query", "key": "src", "value": "edgemon"},
            ],
        },
    },
    "extendedEventParam": ["vehicle.position", "environment.air.temp"],
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
                "name": "hot",
                "data": {"data": "environment.air.temp", "op": "greaterThan", "value": ["30"]},
            },
            {
                "name": "day",
                "time": {
                    "timeZone": "Europe/Paris",
                    "times": [
                        {
                            "recurrence": "Daily",
                            "start": "PT8H",
                            "duration": "PT10H",
                            "occurence": ["Mon", "Tue"],
                        }
                    ],
                },
            },
        ],
        "boolExp": "((paris & hot) | day",
    },
}


def test_heatwave_example_with_its_quirks_is_accepted() -> None:
    result = parse_monitor(HEATWAVE, monitor_id="heat-1")
    assert result.problems == []
    monitor = result.monitor
    assert monitor is not None and monitor.id == "heat-1" and monitor.label == "Heatwave"
    zone, hot, day = monitor.triggers
    assert isinstance(zone, ZoneTrigger) and zone.place == Circle(48.85, 2.35, 20_000.0)
    assert isinstance(hot, DataTrigger) and hot.values == ("30",)
    assert isinstance(day, TimeTrigger) and day.windows[0].days == frozenset({1, 2})  # type: ignore[union-attr]
    assert monitor.bool_exp == "((paris & hot) | day)"
    sub = monitor.subscribe
    assert sub.refresh_event == 3600 and sub.batch is not None and sub.batch.time_window == 60
    assert (sub.retry.policy, sub.retry.retry_number, sub.retry.retry_delay) == ("Bounded", 5, 30)
    assert sub.webhook is not None and sub.webhook.target == "https://example.com/hook"
    header = sub.webhook.attributes[0]
    assert header == Attribute("Header", "X-Vehicle", "$Vin")
    assert header.render({"VIN": "VF3ABC"}) == "VF3ABC"
    assert sub.webhook.attributes[1].render({"monitorId": "heat-1"}) == "heat-1"
    warned = {w.path for w in result.warnings}
    assert "$.triggerParam.boolExp" in warned
    assert "$.subscribeParam.callback.attributres" in warned


def test_spec_shapes_webhook_wrapper_occurrence_object_quickstart_keys() -> None:
    obj = copy.deepcopy(HEATWAVE)
    sub = obj["subscribeParam"]
    sub["callback"] = {"webhook": sub["callback"]}
    sub["retryPolicy"] = {"policy": "Always", "retryNumber": 2}
    params = obj["triggerParam"]
    params["bool.exp"] = params.pop("boolExp")
    time = params["triggers"][2]["time"]
    time["time.zone"] = time.pop("timeZone")
    entry = time["times"][0]
    entry["occurrence"] = {"day": ["Sat", "Sunday"], "week": ["w34-w46", "w1"]}
    del entry["occurence"]
    params["triggers"][0]["zone"]["place"] = params["triggers"][0]["zone"].pop("circle")
    result = parse_monitor(obj)
    assert result.problems == []
    monitor = result.monitor
    assert monitor is not None and monitor.id.startswith("m-")
    window = monitor.triggers[2].windows[0]  # type: ignore[union-attr]
    assert window.days == frozenset({6, 7})
    assert window.weeks == frozenset(range(34, 47)) | {1}
    assert monitor.subscribe.retry.retry_number == 2
    assert monitor.subscribe.webhook is not None and monitor.subscribe.webhook.name == "heat"


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    obj = {
        "label": 7,
        "status": "Sleeping",
        "subscribeParam": {"retryPolicy": {"policy": "Sometimes"}, "batchNotify": {"size": 0}},
        "triggerParam": {
            "triggers": [
                {"name": "a", "data": {"data": "vehicle.odometer", "op": "onChange"}},
                {"name": "b", "zone": {"transition": "Up", "place": {"radius": 1}}},
                {"name": "c", "time": {"timeZone": "Mars/Olympus", "times": [{"start": "PT25H"}]}},
                {"name": "d", "data": {"data": "vehicle.nope", "op": "equalsTo", "value": ["1"]}},
                {
                    "name": "e",
                    "data": {
                        "data": "vehicle.kinetic.speed",
                        "op": "greaterThan",
                        "value": ["fast"],
                    },
                },
                {"name": "f", "zone": {}, "data": {}},
            ],
            "boolExp": "a & b | c & d & e & f & g",
        },
    }
    result = parse_monitor(obj)
    assert result.monitor is None
    paths = [p.path for p in result.problems]
    expected = [
        "$.label",
        "$.status",
        "$.subscribeParam.retryPolicy.policy",
        "$.subscribeParam.batchNotify.size",
        "$.triggerParam.triggers[0].data.op",
        "$.triggerParam.triggers[1].zone.transition",
        "$.triggerParam.triggers[1].zone.place.center",
        "$.triggerParam.triggers[2].time.timeZone",
        "$.triggerParam.triggers[3].data.data",
        "$.triggerParam.triggers[4].data.value",
        "$.triggerParam.triggers[5]",
        "$.triggerParam.boolExp",
    ]
    for path in expected:
        assert path in paths, (path, result.problems)
    assert any("'g'" in p.message for p in result.problems)


def test_always_true_or_false_expressions_are_rejected() -> None:
    for text, word in (("a | !a", "true"), ("a & !a", "false")):
        obj = {
            "label": "x",
            "triggerParam": {
                "triggers": [
                    {
                        "name": "a",
                        "data": {"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"]},
                    }
                ],
                "boolExp": text,
            },
        }
        result = parse_monitor(obj)
        assert [(p.path, p.message) for p in result.problems] == [
            ("$.triggerParam.boolExp", f"is always {word}")
        ]


def test_v2_form_is_anded_and_mixing_forms_is_a_problem() -> None:
    v2 = {
        "label": "legacy",
        "triggerParam": {
            "timeZoneTriggers": {
                "zoneTrigger": {
                    "transition": "In",
                    "place": {"radius": 1, "center": {"latitude": 1, "longitude": 2}},
                }
            },
            "dataTriggers": [
                {"data": "vehicle.engines.running", "op": "equalsTo", "value": ["true"]}
            ],
        },
    }
    result = parse_monitor(v2)
    assert result.problems == [] and result.monitor is not None
    assert result.monitor.bool_exp == "zone & data1"
    mixed = copy.deepcopy(v2)
    mixed["triggerParam"]["boolExp"] = "zone"
    assert [p.path for p in parse_monitor(mixed).problems] == ["$.triggerParam"]


def test_catalog_decides_names_ops_and_value_types(catalog: FakeCatalog) -> None:
    def one(body: dict[str, Any]) -> list[str]:
        obj = {
            "label": "x",
            "triggerParam": {"triggers": [{"name": "t", "data": body}], "boolExp": "t"},
        }
        return [p.message for p in parse_monitor(obj, catalog=catalog).problems]

    assert one({"data": "EngineData.CoolantTemp", "op": "greaterThan", "value": ["90"]}) == []
    assert (
        one({"data": "vehicle.kinetic.speed", "op": "greaterThan", "value": ["90"]}) == []
    )  # from GPS
    assert one({"data": "vehicle.autonomy", "op": "lowerThan", "value": ["50"]}) == [
        "this vehicle does not provide 'vehicle.autonomy'"
    ]
    assert one({"data": "vehicle.doorsState.opening", "op": "equalsTo", "value": ["open"]}) == []
    assert (
        "not one of"
        in one({"data": "vehicle.doorsState.opening", "op": "equalsTo", "value": ["Ajar"]})[0]
    )
    assert (
        "not allowed"
        in one({"data": "vehicle.engines.running", "op": "greaterThan", "value": ["1"]})[0]
    )
    assert (
        "not a boolean"
        in one({"data": "vehicle.engines.running", "op": "equalsTo", "value": ["maybe"]})[0]
    )
    assert one({"data": "vehicle.odometer", "op": "between", "value": ["9", "1"]}) == [
        "between needs low <= high"
    ]
    assert one({"data": "vehicle.odometer", "op": "risesBy", "delta": 5, "withinSeconds": 60}) == []
    assert len(one({"data": "vehicle.odometer", "op": "risesBy", "value": ["5"]})) == 1
    assert (
        one({"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"], "hysteresis": 2})
        == []
    )
    assert (
        one({"data": "vehicle.odometer", "op": "equalsTo", "value": ["5"], "hysteresis": 2}) != []
    )
    assert one(
        {"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"], "hysterisis": 2}
    ) == ["unknown field (did you mean 'hysteresis'?)"]


def test_without_catalog_the_stellantis_table_applies() -> None:
    def one(body: dict[str, Any]) -> tuple[list[str], list[str]]:
        obj = {
            "label": "x",
            "triggerParam": {"triggers": [{"name": "t", "data": body}], "boolExp": "t"},
        }
        result = parse_monitor(obj)
        return [p.message for p in result.problems], [w.message for w in result.warnings]

    assert one({"data": "vehicle.doorsState.opening", "op": "onChange"}) == ([], [])
    problems, _ = one({"data": "vehicle.doorsState.opening", "op": "equalsTo", "value": ["Open"]})
    assert "not allowed" in problems[0]
    problems, warnings = one({"data": "EngineData.OilTemp", "op": "greaterThan", "value": ["1"]})
    assert problems == [] and "DBC signal" in warnings[0]
    assert (
        one(
            {
                "data": "privacy.state",
                "op": "equalsTo",
                "value": ["Full"],
                "previous": {"op": "equalsTo", "value": ["None"]},
            }
        )[0]
        == []
    )


def test_callback_problems_and_plain_http_warning() -> None:
    obj = copy.deepcopy(HEATWAVE)
    obj["subscribeParam"]["callback"]["target"] = "http://example.com/hook"
    result = parse_monitor(obj)
    assert result.problems == []
    assert any("plain http" in w.message for w in result.warnings)
    obj["subscribeParam"]["callback"]["target"] = "ftp://x"
    assert [p.path for p in parse_monitor(obj).problems] == ["$.subscribeParam.callback.target"]


def test_resource_wrapper_and_paused_status() -> None:
    wrapped = {"monitorId": "abc", "status": "Paused", "monitor": copy.deepcopy(HEATWAVE)}
    result = parse_monitor(wrapped)
    assert result.monitor is not None and result.monitor.id == "abc" and result.monitor.paused


def test_monitor_hash_is_stable_and_order_free() -> None:
    a = {"label": "x", "triggerParam": {"boolExp": "t", "triggers": []}}
    b = {"triggerParam": {"triggers": [], "boolExp": "t"}, "label": "x"}
    assert monitor_hash(a) == monitor_hash(b)
    assert len(monitor_hash(a)) == 64
    assert monitor_hash(a) != monitor_hash({**a, "label": "y"})


# As the docs publish it (reference §6): three triggers in ONE object with repeated keys, a
# callback without the webhook wrapper, `circle`, an unbalanced boolExp.
AUTONOMY_TEXT = """{
  "label": "Autonomy outside Paris or on Mondays",
  "subscribeParam": {
    "refreshEvent": 600,
    "retryPolicy": {"policy": "Always", "maxRetryNumber": 3, "retryDelay": 120},
    "batchNotify": {"size": 10, "timeWindow": 300},
    "callback": {"target": "https://hooks.example.net/cb1", "name": "HTTP_CB",
                 "attributes": [{"type": "Query", "key": "vin", "value": "$vin"}]}
  },
  "extendedEventParam": ["vehicle.alerts", "vehicle.status"],
  "triggerParam": {
    "triggers": [{
      "name": "outOfParis",
      "zone": {"transition": "Out",
               "circle": {"radius": 20, "center": {"longitude": 2.3333, "latitude": 48.8667}}},
      "name": "onMonday",
      "time": {"times": [{"recurrence": "Daily", "start": "PT14H30M",
                          "occurence": {"day": ["Mon"]}, "duration": "PT04H30M"}],
               "timeZone": "Europe/Paris"},
      "name": "batteryIsLow",
      "data": {"data": "vehicle.energy.electric.level", "op": "lowerThan", "value": ["50"]}
    }],
    "boolExp": "((outOfParis & (batteryIsLow | onMonday)"
  }
}"""


@pytest.mark.parametrize("quickstart", [False, True])
def test_the_published_autonomy_example_is_read_as_three_triggers(quickstart: bool) -> None:
    text = AUTONOMY_TEXT
    if quickstart:  # the quickstart page's spellings, and its plain-http target
        text = text.replace('"timeZone"', '"time.zone"').replace('"boolExp"', '"bool.exp"')
        text = text.replace("https://hooks", "http://hooks")
    result = parse_monitor(loads_monitor(text))
    assert result.problems == []
    monitor = result.monitor
    assert monitor is not None
    assert [t.name for t in monitor.triggers] == ["outOfParis", "onMonday", "batteryIsLow"]
    assert [type(t) for t in monitor.triggers] == [ZoneTrigger, TimeTrigger, DataTrigger]
    assert monitor.bool_exp == "((outOfParis & (batteryIsLow | onMonday)))"
    warnings = {w.path: w.message for w in result.warnings}
    assert "read apart" in warnings["$.triggerParam.triggers[0]"]


def test_published_model_quirks_capitalised_name_and_zero_retry_with_none() -> None:
    obj = {
        "label": "model",
        "subscribeParam": {"retryPolicy": {"policy": "None", "maxRetryNumber": 0, "retryDelay": 0}},
        "triggerParam": {
            "triggers": [
                {
                    "name": "o1",
                    "data": {"data": "Vehicle.odometer", "op": "greaterThan", "value": ["75"]},
                }
            ],
            "boolExp": "o1",
        },
    }
    result = parse_monitor(obj)
    assert result.problems == []
    assert result.monitor is not None
    assert result.monitor.triggers[0] == DataTrigger(
        "o1", "vehicle.odometer", "greaterThan", ("75",)
    )
    assert result.monitor.subscribe.retry == RetryPolicy("None", 3, 10)
    obj["subscribeParam"]["retryPolicy"]["policy"] = "Bounded"  # type: ignore[index]
    assert {p.path for p in parse_monitor(obj).problems} == {
        "$.subscribeParam.retryPolicy.retryNumber",
        "$.subscribeParam.retryPolicy.retryDelay",
    }


def test_time_trigger_on_a_vehicle_without_an_in_use_signal_is_warned() -> None:
    window = {"times": [{"start": "PT8H", "duration": "PT1H"}]}
    obj = {
        "label": "x",
        "triggerParam": {"triggers": [{"name": "t", "time": window}], "boolExp": "t"},
    }
    result = parse_monitor(obj, catalog=FakeCatalog({}))
    assert result.problems == []
    assert [w.path for w in result.warnings] == ["$.triggerParam.triggers[0].time.requireInUse"]
    window["requireInUse"] = False  # type: ignore[assignment]
    assert parse_monitor(obj, catalog=FakeCatalog({})).warnings == []
