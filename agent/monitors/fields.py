"""Reading one JSON object of a monitor definition while collecting every problem with its path.

Pure. A ``Fields`` never raises on bad input: it records a ``Problem`` (or a warning) located by
a JSON path such as ``$.triggerParam.triggers[1].data.op`` and returns None, so the parser can
keep going and report every problem at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agent.errors import Problem
from agent.suggest import did_you_mean


@dataclass(slots=True)
class Report:
    """Problems (the definition is rejected) and warnings (accepted, but said)."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    soft_prefixes: tuple[str, ...] = ()  # problems under these paths are only warnings

    def problem(self, path: str, message: str) -> None:
        if self.soft_prefixes and path.startswith(self.soft_prefixes):
            self.warnings.append(Problem(path, message))
            return
        self.problems.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class Fields:
    """Typed access to the keys of one JSON object, by name and accepted aliases."""

    def __init__(self, obj: Mapping[str, object], path: str, report: Report) -> None:
        self.obj = obj
        self.path = path
        self.report = report

    @classmethod
    def of(cls, value: object, path: str, report: Report) -> Fields | None:
        if not isinstance(value, dict):
            report.problem(path, f"expected an object, got {type_name(value)}")
            return None
        return cls(value, path, report)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def find(self, *keys: str) -> tuple[str, object] | None:
        """The first key present among ``keys`` (name, then aliases) and its value."""
        for key in keys:
            if key in self.obj:
                return key, self.obj[key]
        return None

    def has(self, *keys: str) -> bool:
        return self.find(*keys) is not None

    def _value(self, keys: tuple[str, ...], required: bool) -> tuple[str, object] | None:
        found = self.find(*keys)
        if found is None:
            if required:
                self.report.problem(self.at(keys[0]), "is required")
            return None
        return found

    def _wrong(self, key: str, expected: str, value: object) -> None:
        self.report.problem(self.at(key), f"expected {expected}, got {type_name(value)}")

    def string(self, *keys: str, required: bool = False) -> str | None:
        found = self._value(keys, required)
        if found is None:
            return None
        key, value = found
        if not isinstance(value, str):
            self._wrong(key, "a string", value)
            return None
        return value

    def integer(self, *keys: str, required: bool = False, minimum: int | None = None) -> int | None:
        found = self._value(keys, required)
        if found is None:
            return None
        key, value = found
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self._wrong(key, "an integer", value)
            return None
        if minimum is not None and value < minimum:
            self.report.problem(self.at(key), f"must be at least {minimum}, got {value}")
            return None
        return value

    def number(
        self, *keys: str, required: bool = False, minimum: float | None = None
    ) -> float | None:
        found = self._value(keys, required)
        if found is None:
            return None
        key, value = found
        if not isinstance(value, int | float) or isinstance(value, bool):
            self._wrong(key, "a number", value)
            return None
        if minimum is not None and value < minimum:
            self.report.problem(self.at(key), f"must be at least {minimum}, got {value}")
            return None
        return float(value)

    def boolean(self, *keys: str, default: bool) -> bool:
        found = self._value(keys, False)
        if found is None:
            return default
        key, value = found
        if not isinstance(value, bool):
            self._wrong(key, "true or false", value)
            return default
        return value

    def child(self, *keys: str, required: bool = False) -> Fields | None:
        found = self._value(keys, required)
        if found is None:
            return None
        key, value = found
        return Fields.of(value, self.at(key), self.report)

    def array(self, *keys: str, required: bool = False) -> list[tuple[str, object]] | None:
        """The items of an array with their paths (``$.x[2]``)."""
        found = self._value(keys, required)
        if found is None:
            return None
        key, value = found
        if not isinstance(value, list):
            self._wrong(key, "an array", value)
            return None
        return [(f"{self.at(key)}[{i}]", item) for i, item in enumerate(value)]

    def strings(self, *keys: str, required: bool = False) -> tuple[str, ...] | None:
        items = self.array(*keys, required=required)
        if items is None:
            return None
        out: list[str] = []
        for path, item in items:
            if isinstance(item, str):
                out.append(item)
            else:
                self.report.problem(path, f"expected a string, got {type_name(item)}")
        return tuple(out)

    def unknown(self, allowed: Iterable[str], *, warn_only: bool = False) -> None:
        """Report keys not in ``allowed`` (a misspelt extension must not be silently ignored)."""
        known = set(allowed)
        for key in self.obj:
            if key not in known:
                hint = did_you_mean(key, known)
                if warn_only:
                    self.report.warn(self.at(key), f"unknown field, ignored{hint}")
                else:
                    self.report.problem(self.at(key), f"unknown field{hint}")


class RepeatedKeys(dict[str, object]):
    """A JSON object whose keys repeat; ``pairs`` keeps every (key, value) in order.

    The published docs write several triggers in one object, one ``name`` key per trigger
    (reference §6/§7.6); a plain ``json.loads`` keeps only the last of each key."""

    pairs: list[tuple[str, object]]


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = RepeatedKeys(obj)
    repeated.pairs = pairs
    return repeated


def loads_monitor(text: str | bytes) -> object:
    """``json.loads`` that remembers repeated keys (``RepeatedKeys``); raises ValueError."""
    return json.loads(text, object_pairs_hook=_object)


def split_repeated(obj: object, first_key: str) -> list[object]:
    """Objects of a ``RepeatedKeys`` cut at each ``first_key``; any other value as is."""
    if not isinstance(obj, RepeatedKeys) or [k for k, _ in obj.pairs].count(first_key) < 2:
        return [obj]
    parts: list[dict[str, object]] = []
    for key, value in obj.pairs:
        if key == first_key or not parts:
            parts.append({})
        parts[-1][key] = value
    return list(parts)
