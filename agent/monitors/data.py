"""Data triggers: definition, parsing, value conversion and the operator registry.

Stellantis operators: ``equalsTo``, ``greaterThan``, ``lowerThan``, ``includedIn``, ``onChange``.
Extensions (SPEC §2): ``notEqualTo``, ``greaterOrEqual``, ``lowerOrEqual``, ``between``
(``value: [low, high]``), ``risesBy`` / ``fallsBy`` (``delta``, or ``value[0]``, within
``withinSeconds``), ``hysteresis`` (a threshold once crossed must be crossed back by this much),
``minDurationSeconds`` (the condition counts only after holding that long), and the Stellantis
``previous`` precondition (``{op: equalsTo|includedIn, value: [...]}``) on the value before the
transition, checked on the first firing only.

Values are strings (``["50"]``) converted to the signal's type: number, boolean or enum name.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from agent.model import SignalInfo, SignalKind, Value
from agent.monitors.fields import Fields
from agent.suggest import did_you_mean

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class Previous:
    op: str  # equalsTo | includedIn
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DataTrigger:
    name: str
    data: str  # a Stellantis data name or a DBC "Message.Signal"
    op: str
    values: tuple[str, ...] = ()
    previous: Previous | None = None
    hysteresis: float = 0.0
    min_duration_s: float = 0.0
    delta: float | None = None  # risesBy / fallsBy
    within_s: float | None = None  # risesBy / fallsBy


def convert(text: str, info: SignalInfo) -> Value:
    """A value string as the signal's type; raises ValueError naming what was expected."""
    if info.kind is SignalKind.NUMBER:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    if info.kind is SignalKind.BOOLEAN:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if not info.choices or text in info.choices:
        return text
    for choice in info.choices:
        if choice.lower() == text.lower():
            return choice
    raise ValueError(f"{text!r} is not one of {', '.join(info.choices)}")


def as_kind(value: Value, info: SignalInfo) -> Value | None:
    """A state value seen as the signal's type (None when it cannot be)."""
    if info.kind is SignalKind.NUMBER:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return float(value)
    if info.kind is SignalKind.BOOLEAN:
        if isinstance(value, str):
            lowered = value.lower()
            return True if lowered in _TRUE else False if lowered in _FALSE else None
        return bool(value)
    return value if isinstance(value, str) else str(value)


def literal(value: Value) -> str:
    """A value as Stellantis ``literalValue`` text (``true``, ``92``, ``92.5``, ``Running``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


Test = Callable[[Value], bool]


def _threshold(compare: Callable[[float, Value], bool], sign: float) -> Callable[..., Test]:
    # ``compare(threshold, v)`` as a C-level partial; ``widen`` moves the threshold the way back
    return lambda args, widen: partial(compare, float(args[0]) + sign * widen)


def _between(args: tuple[Value, ...], widen: float) -> Test:
    low, high = float(args[0]) - widen, float(args[1]) + widen
    return lambda v: low <= v <= high  # type: ignore[operator]


# The comparison operators (a plain dict, STYLE §7): op -> builder(operands, widen) -> test(value).
# ``widen`` is the hysteresis, applied while the trigger is true (the way back only).
COMPARISONS: dict[str, Callable[[tuple[Value, ...], float], Test]] = {
    "equalsTo": lambda args, widen: partial(operator.eq, args[0]),
    "notEqualTo": lambda args, widen: partial(operator.ne, args[0]),
    "includedIn": lambda args, widen: frozenset(args).__contains__,
    "greaterThan": _threshold(operator.lt, -1.0),  # threshold < v
    "greaterOrEqual": _threshold(operator.le, -1.0),
    "lowerThan": _threshold(operator.gt, 1.0),  # threshold > v
    "lowerOrEqual": _threshold(operator.ge, 1.0),
    "between": _between,
}
# ops whose truth depends on history rather than on the current value alone
STATEFUL_OPS = frozenset({"onChange", "risesBy", "fallsBy"})
THRESHOLD_OPS = frozenset({"greaterThan", "greaterOrEqual", "lowerThan", "lowerOrEqual", "between"})
_VALUE_COUNT = {"between": (2, 2), "includedIn": (1, None), "onChange": (0, 0)}

_DATA_KEYS = {
    "data",
    "op",
    "value",
    "previous",
    "hysteresis",
    "minDurationSeconds",
    "delta",
    "withinSeconds",
}


def parse_data(name: str, fields: Fields) -> DataTrigger | None:
    """Shape checks only; names, operators and values against a catalog: ``check_data``."""
    report = fields.report
    before = len(report.problems)
    fields.unknown(_DATA_KEYS)
    data = fields.string("data", required=True)
    op = fields.string("op", required=True)
    values = fields.strings("value") or ()
    if op is not None and op not in COMPARISONS and op not in STATEFUL_OPS:
        hint = did_you_mean(op, [*COMPARISONS, *STATEFUL_OPS])
        report.problem(fields.at("op"), f"unknown operator {op!r}{hint}")
        op = None
    delta = fields.number("delta", minimum=0.0)
    within = fields.number("withinSeconds", minimum=0.0)
    if op in ("risesBy", "fallsBy"):
        delta, values = _rate_of_change(fields, delta, within, values)
    elif op is not None:
        _check_count(fields, op, values)
    previous = _parse_previous(fields)
    hysteresis = fields.number("hysteresis", minimum=0.0) or 0.0
    if hysteresis and op is not None and op not in THRESHOLD_OPS:
        report.problem(fields.at("hysteresis"), f"applies to thresholds, not to {op}")
    min_duration = fields.number("minDurationSeconds", minimum=0.0) or 0.0
    if len(report.problems) > before or data is None or op is None:
        return None
    return DataTrigger(name, data, op, values, previous, hysteresis, min_duration, delta, within)


def _rate_of_change(
    fields: Fields, delta: float | None, within: float | None, values: tuple[str, ...]
) -> tuple[float | None, tuple[str, ...]]:
    report = fields.report
    if delta is None and len(values) == 1:
        try:
            delta = float(values[0])
        except ValueError:
            report.problem(f"{fields.at('value')}[0]", f"{values[0]!r} is not a number")
    if delta is None or delta <= 0:
        report.problem(fields.at("delta"), "a positive delta is required (delta or value[0])")
    if within is None or within <= 0:
        report.problem(fields.at("withinSeconds"), "a positive withinSeconds is required")
    return delta, ()


def _check_count(fields: Fields, op: str, values: tuple[str, ...]) -> None:
    low, high = _VALUE_COUNT.get(op, (1, None))
    if len(values) < low:
        need = f"{low} value(s)" if low == high or high is None else f"{low}..{high} values"
        fields.report.problem(fields.at("value"), f"{op} needs {need}")
    elif high is not None and len(values) > high:
        if op == "onChange":
            fields.report.warn(fields.at("value"), "onChange takes no value; ignored")
        else:
            fields.report.problem(fields.at("value"), f"{op} takes {high} values")
    elif op in ("equalsTo", "notEqualTo", "greaterThan", "lowerThan") and len(values) > 1:
        # reference §1.4: extra items are ignored
        fields.report.warn(fields.at("value"), f"{op} uses the first value; the others are ignored")


def _parse_previous(fields: Fields) -> Previous | None:
    previous = fields.child("previous")
    if previous is None:
        return None
    previous.unknown({"op", "value"})
    op = previous.string("op", required=True)
    values = previous.strings("value", required=True)
    if op is not None and op not in ("equalsTo", "includedIn"):
        fields.report.problem(previous.at("op"), f"must be equalsTo or includedIn, got {op!r}")
        return None
    if values is not None and not values:
        fields.report.problem(previous.at("value"), "needs at least one value")
        return None
    if op is None or values is None:
        return None
    return Previous(op, values)


def operands(trigger: DataTrigger, info: SignalInfo) -> tuple[Value, ...]:
    """The trigger's values converted to the signal's type (raises ValueError)."""
    if trigger.op in ("equalsTo", "notEqualTo", "greaterThan", "lowerThan"):
        return (convert(trigger.values[0], info),)
    if trigger.op in COMPARISONS:
        return tuple(convert(text, info) for text in trigger.values)
    return ()
