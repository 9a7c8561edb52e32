"""Bounds on a monitor definition, checked before anything costly reads it (issue 12, finding 6).

A monitor comes from outside (an API body, a retained MQTT message, a local file), so its size
is checked first, in this order and each at a cost linear in its size:

1. ``check_text``: the raw JSON (bytes or text) is at most ``MAX_MONITOR_BYTES`` and nests at
   most ``MAX_JSON_DEPTH`` arrays/objects (counted on the text itself, so ``json.loads`` never
   recurses deeper than that);
2. ``check_tree``: a parsed document (what an API framework hands over) is walked iteratively:
   depth, number of values, total size, integers within 64 bits, finite numbers, strings (and
   keys) that are valid Unicode (a lone surrogate cannot be encoded, hashed or published);
3. the parser then refuses more than ``MAX_TRIGGERS`` triggers, a ``boolExp`` longer than
   ``MAX_EXPRESSION_LENGTH`` or nested deeper than ``MAX_EXPRESSION_DEPTH``, and a zone with
   more than ``MAX_POLYGON_POINTS`` positions, before it evaluates the expression's truth table
   (2^triggers assignments, so at most 1024).

``load_monitor_json`` does 1 and 2 and parses; every refusal is a ``MonitorError`` with a
``Problem`` that says which bound was passed. Pure: no I/O.
"""

from __future__ import annotations

import math
import re

from agent.errors import MonitorError, Problem
from agent.monitors.fields import loads_monitor

MAX_MONITOR_BYTES = 128 * 1024  # a Stellantis monitor is well under 2 KiB; polygons need more
MAX_MONITORS_FILE_BYTES = 4 * 1024 * 1024  # a local file of many monitors (each still bounded)
MAX_JSON_DEPTH = 32  # the deepest valid monitor (a MultiPolygon in a Feature) nests 10 levels
MAX_JSON_VALUES = 20_000  # every object, array, key and scalar counts one
MAX_TRIGGERS = 10  # Stellantis allows 5; more is an extension (the truth table stays small)
MAX_EXPRESSION_LENGTH = 1024  # characters of boolExp
MAX_EXPRESSION_DEPTH = 32  # parentheses and '!' nested in boolExp
MAX_POLYGON_POINTS = 2_000  # positions in one zone (all rings of all polygons)
MAX_INTEGER = 2**63 - 1  # JSON integers beyond 64 bits are refused (SQLite, float conversions)

_SPECIAL = re.compile(rb'["\\\[\]{}]')
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = frozenset(b"[{")


def check_text(data: str | bytes, max_bytes: int = MAX_MONITOR_BYTES) -> list[Problem]:
    """Problems of the raw JSON text's size and nesting (none: it may be parsed)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        return [Problem("$", f"is {len(raw)} bytes or more, more than {max_bytes}")]
    deepest = _nesting(raw)
    if deepest > MAX_JSON_DEPTH + 1:  # + 1: a file may hold an array of monitors
        return [Problem("$", f"nests {deepest} levels, more than {MAX_JSON_DEPTH}")]
    return []


def _nesting(raw: bytes) -> int:
    """The deepest nesting of arrays and objects, brackets inside strings left out; linear."""
    depth = deepest = 0
    in_string = False
    skip = -1  # the character after a backslash inside a string
    for match in _SPECIAL.finditer(raw):
        pos = match.start()
        char = raw[pos]
        if pos == skip:
            continue
        if in_string:
            if char == _BACKSLASH:
                skip = pos + 1
            elif char == _QUOTE:
                in_string = False
        elif char == _QUOTE:
            in_string = True
        elif char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char != _BACKSLASH:
            depth -= 1
    return deepest


def check_tree(obj: object) -> list[Problem]:
    """Problems of a parsed JSON document (none: the parser may read it). Iterative: a document
    nested deeper than Python's recursion limit is refused, not a RecursionError."""
    stack: list[tuple[object, str, int]] = [(obj, "$", 1)]
    values = size = 0
    while stack:
        value, path, depth = stack.pop()
        values += 1
        if depth > MAX_JSON_DEPTH:
            return [Problem(path, f"nests more than {MAX_JSON_DEPTH} levels")]
        if values > MAX_JSON_VALUES or size > MAX_MONITOR_BYTES:
            return [Problem("$", f"is larger than {MAX_MONITOR_BYTES} bytes")]
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or (problem := _check_string(key, path)) is not None:
                    return [problem or Problem(path, "has a key that is not a string")]
                size += len(key) + 4
                stack.append((item, f"{path}.{key[:40]}", depth + 1))
        elif isinstance(value, list):
            size += 2
            stack += [(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
        elif isinstance(value, str):
            size += len(value) + 2
            if (problem := _check_string(value, path)) is not None:
                return [problem]
        elif (problem := _check_scalar(value, path)) is not None:
            return [problem]
        else:
            size += 8
    if size > MAX_MONITOR_BYTES:
        return [Problem("$", f"is larger than {MAX_MONITOR_BYTES} bytes")]
    return []


def _check_string(text: str, path: str) -> Problem | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return Problem(path, f"holds text that is not valid Unicode at character {exc.start + 1}")
    return None


def _check_scalar(value: object, path: str) -> Problem | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -MAX_INTEGER - 1 <= value <= MAX_INTEGER else Problem(path, "too large")
    if isinstance(value, float):
        return None if math.isfinite(value) else Problem(path, "is not a finite number")
    return Problem(path, f"{type(value).__name__} is not a JSON value")


def load_monitor_json(
    data: str | bytes, *, max_bytes: int = MAX_MONITOR_BYTES, tree: bool = True
) -> object:
    """The JSON of one monitor within the bounds; raises ``MonitorError``. ``tree=False`` (a
    file of several monitors) leaves the per-monitor ``check_tree`` to ``parse_monitor``."""
    problems = check_text(data, max_bytes)
    if problems:
        raise MonitorError(problems)
    try:
        obj = loads_monitor(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, digits
        raise MonitorError([Problem("$", f"not valid JSON: {_short(str(exc))}")]) from exc
    problems = check_tree(obj) if tree else []
    if problems:
        raise MonitorError(problems)
    return obj


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def count_positions(obj: object) -> int:
    """Arrays of numbers (GeoJSON positions) anywhere under ``obj``, counted iteratively."""
    count = 0
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack += value.values()
        elif isinstance(value, list):
            if value and all(_is_number(v) for v in value):
                count += 1
            else:
                stack += value
    return count


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
