"""Hostile monitor definitions of issue 12 (finding 6), shared by the unit, agent and API tests."""

from __future__ import annotations

from typing import Any

OIL = "vehicle.engines.thermic.oil.temp"


def oil_trigger(name: str, threshold: str = "130") -> dict[str, Any]:
    return {"name": name, "data": {"data": OIL, "op": "greaterThan", "value": [threshold]}}


def with_triggers(count: int, bool_exp: str | None = None, **extra: Any) -> dict[str, Any]:
    """A monitor of ``count`` oil triggers ORed (or ``bool_exp``), with a webhook callback."""
    names = [f"t{i}" for i in range(count)]
    body: dict[str, Any] = {
        "label": f"{count} triggers",
        "subscribeParam": {
            "callback": {"webhook": {"target": "https://hooks.example/in", "name": "h"}}
        },
        "triggerParam": {
            "triggers": [oil_trigger(name) for name in names],
            "boolExp": bool_exp if bool_exp is not None else " | ".join(names),
        },
    }
    body.update(extra)
    return body


def many_triggers(count: int = 24) -> dict[str, Any]:
    """Finding 6: 24 triggers ANDed, refused; before the fix, after a 2^24-row truth table (an
    AND is false on every row but the last, so the always-true/false search saw every row)."""
    return with_triggers(count, " & ".join(f"t{i}" for i in range(count)))


def deep_parentheses(depth: int = 5000) -> dict[str, Any]:
    """Finding 6: a boolExp of thousands of parentheses (RecursionError before the fix)."""
    return with_triggers(1, "(" * depth + "t0" + ")" * depth)


def zone_named(time_zone: str) -> dict[str, Any]:
    """A time trigger in ``time_zone`` (``"Europe"`` crashed the agent at every start)."""
    body = with_triggers(1)
    window = {"recurrence": "Daily", "start": "PT8H", "duration": "PT1H"}
    body["triggerParam"]["triggers"] = [
        {"name": "t0", "time": {"timeZone": time_zone, "times": [window]}}
    ]
    return body


def nested_json(depth: int = 5000) -> str:
    """A monitor whose label is an array nested ``depth`` deep, as JSON text."""
    return '{"label": ' + "[" * depth + "]" * depth + ', "triggerParam": {}}'
