"""Bounds on monitor definitions (issue 12, finding 6): refused with a reason, before any cost."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings

from agent.errors import MonitorError
from agent.monitors.expr import (
    MAX_NAMES,
    ExprError,
    Name,
    Or,
    constant_value,
    evaluate,
    names_of,
    parse_expression,
)
from agent.monitors.limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_JSON_DEPTH,
    MAX_MONITOR_BYTES,
    MAX_POLYGON_POINTS,
    MAX_TRIGGERS,
    check_text,
    load_monitor_json,
)
from agent.monitors.model import monitor_hash, parse_monitor
from agent.monitors.schedule import load_zone
from tests.agent.monitors.hostile import (
    deep_parentheses,
    many_triggers,
    nested_json,
    with_triggers,
    zone_named,
)
from tests.agent.monitors.test_monitors_expr import trees


def _messages(obj: object) -> list[str]:
    return [str(p) for p in parse_monitor(obj).problems]


def test_too_many_triggers_refused_without_reading_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.monitors import definition

    def no_table(_expr: object) -> None:
        raise AssertionError("the truth table was computed")

    monkeypatch.setattr(definition, "constant_value", no_table)
    monkeypatch.setattr(definition, "_triggers", no_table)
    assert _messages(many_triggers(24)) == [
        f"$.triggerParam.triggers: needs 1 to {MAX_TRIGGERS} triggers"
    ]


def test_the_limit_itself_is_accepted_and_checked_for_constants() -> None:
    assert parse_monitor(with_triggers(MAX_TRIGGERS)).ok
    names = [f"t{i}" for i in range(MAX_TRIGGERS)]
    always = " | ".join(names) + " | !t0"
    assert _messages(with_triggers(MAX_TRIGGERS, always)) == [
        "$.triggerParam.boolExp: is always true"
    ]


def test_deep_parentheses_are_a_problem_not_a_recursion_error() -> None:
    (message,) = _messages(deep_parentheses(5000))
    assert message.startswith("$.triggerParam.boolExp: is 10002 characters long")
    within_length = deep_parentheses(MAX_EXPRESSION_DEPTH + 1)
    (message,) = _messages(within_length)
    assert f"nested more than {MAX_EXPRESSION_DEPTH} levels deep" in message
    assert parse_monitor(deep_parentheses(MAX_EXPRESSION_DEPTH)).ok


def test_long_negation_chains_are_bounded_too() -> None:
    with pytest.raises(ExprError, match="nested more than"):
        parse_expression("!" * 500 + "a")
    assert parse_expression("!" * 32 + "a").expr is not None


def test_invalid_time_zones_are_problems() -> None:
    for name in (
        "Europe",
        "America",
        "Mars/Base",
        "../../etc/passwd",
        "Europe/Paris\x00",
        "x" * 5000,
    ):
        (message,) = _messages(zone_named(name))
        assert message.startswith("$.triggerParam.triggers[0].time.timeZone: unknown time zone")
        assert load_zone(name) is None
    assert parse_monitor(zone_named("Europe/Paris")).ok
    assert load_zone("Etc/GMT+5") is not None


def test_documents_past_the_bounds_are_refused_before_parsing() -> None:
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    hostile = {
        "deep": {"label": deep},
        "surrogate": with_triggers(1, label="\ud800"),
        "surrogate key": {"\udfff": 1, **with_triggers(1)},
        "huge integer": with_triggers(1, label=10**40),
        "infinite": with_triggers(1, label=float("inf")),
        "large": with_triggers(1, label="x" * (MAX_MONITOR_BYTES + 1)),
    }
    for name, obj in hostile.items():
        parsed = parse_monitor(obj)
        assert not parsed.ok and len(parsed.problems) == 1, name
        if name != "deep":  # a rejected definition still gets a hash (lone surrogates too)
            assert len(monitor_hash(obj)) == 64


def test_load_monitor_json_refuses_text_past_the_bounds() -> None:
    cases = {
        nested_json(5000): f"more than {MAX_JSON_DEPTH}",
        '{"label": "' + "x" * MAX_MONITOR_BYTES + '"}': f"more than {MAX_MONITOR_BYTES}",
        '{"label": ' + "9" * 5000 + "}": "not valid JSON",
        '{"label": "\\ud800"}': "not valid Unicode",
        b'{"label": "\xff"}': "not valid JSON",
        '{"label": 1e999}': "not a finite number",
    }
    for text, expected in cases.items():
        with pytest.raises(MonitorError, match=expected):
            load_monitor_json(text)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"label": "[" * 500 + '\\"{' * 100, "x": [[["\\"]]]})
    assert check_text(text) == []
    assert load_monitor_json(text) == json.loads(text)
    assert check_text('"\\"[[[[' + "[" * 40) == []  # an unterminated string holds them all


def test_polygon_with_too_many_points_is_refused() -> None:
    ring = [[2.0 + i * 1e-5, 48.0] for i in range(MAX_POLYGON_POINTS)] + [[2.0, 48.1], [2.0, 48.0]]
    body = with_triggers(1)
    place = {"type": "Polygon", "coordinates": [ring]}
    body["triggerParam"]["triggers"] = [{"name": "t0", "zone": {"place": place}}]
    (message,) = _messages(body)
    assert f"more than {MAX_POLYGON_POINTS}" in message


@settings(max_examples=200, deadline=None)
@given(trees())
def test_bitmask_truth_table_agrees_with_enumeration(tree: object) -> None:
    names = sorted(names_of(tree))  # type: ignore[arg-type]
    seen = {
        evaluate(tree, dict(zip(names, bits, strict=True)))  # type: ignore[arg-type]
        for bits in itertools.product((False, True), repeat=len(names))
    }
    expected = seen.pop() if len(seen) == 1 else None
    assert constant_value(tree) is expected  # type: ignore[arg-type]


def test_constant_value_refuses_more_names_than_its_bound() -> None:
    wide = Or(tuple(Name(f"n{i}") for i in range(MAX_NAMES + 1)))
    with pytest.raises(ValueError, match="names"):
        constant_value(wide)
