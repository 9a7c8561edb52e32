"""Which triggers a new value of one name can affect, without looking at the others.

A comparison trigger (thresholds, ranges, equality, with or without hysteresis) changes its
answer only when the value crosses one of its *critical values* (``120`` and ``120 - h`` for
``greaterThan 120`` with hysteresis ``h``) or, for names with discrete values, when the old or
the new value is one of its operands. So a change from ``old`` to ``new`` needs only the triggers
with a critical value in ``[min(old, new), max(old, new)]`` (bisect on a sorted list), or the
operands ``old`` and ``new`` (a dict). Other triggers (``onChange``, rates, "in use") are always
looked at. When the previous value is not known (first value, after a stale stretch, a value of
an unexpected type) every trigger is looked at.

This is what keeps 100 monitors cheap when the speed changes on every 20 ms frame.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable
from typing import Any

from agent.model import SignalKind, Value
from agent.monitors.conditions import DataState
from agent.state import SignalState, VehicleState

_UNSEEN: Any = object()
_NUMBERS = (int, float)
Entry = tuple[Any, str, Any]  # (runtime, trigger name, trigger state)


def critical_values(state: DataState) -> list[float]:
    """Where a numeric comparison trigger may change its answer."""
    trigger = state.trigger
    h = trigger.hysteresis
    points = [float(v) for v in trigger.values]
    if trigger.op in ("greaterThan", "greaterOrEqual"):
        points.append(points[0] - h)
    elif trigger.op in ("lowerThan", "lowerOrEqual"):
        points.append(points[0] + h)
    elif trigger.op == "between":
        points += [points[0] - h, points[1] + h]
    return points


class NameIndex:
    def __init__(self, kind: SignalKind | None) -> None:
        self.kind = kind
        self.entries: list[Entry] = []
        self._points: list[float] = []
        self._at_point: list[Entry] = []
        self._by_value: dict[Hashable, list[Entry]] = {}
        self._always: list[Entry] = []
        self.last: Value | None = _UNSEEN
        # the open interval between the critical values around ``last`` (numbers only): a new
        # value strictly inside it affects nothing (checked inline by the engine, the hot path)
        self.gap: tuple[float, float] | None = None
        self.cell: SignalState | None = None  # the state's cell of this name (updated in place)
        self.state: VehicleState | None = None  # the state that cell belongs to

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        state = entry[2]
        if not isinstance(state, DataState) or state.test is None or self.kind is None:
            self._always.append(entry)
        elif self.kind is SignalKind.NUMBER:
            for point in critical_values(state):
                at = bisect.bisect_left(self._points, point)
                self._points.insert(at, point)
                self._at_point.insert(at, entry)
        else:
            for operand in state.operands:
                self._by_value.setdefault(operand, []).append(entry)
        self.forget()

    def remove(self, runtime: object) -> None:
        """Drop every trigger of one monitor (rebuilds the sorted lists)."""
        kept = [e for e in self.entries if e[0] is not runtime]
        self.entries, self._points, self._at_point = [], [], []
        self._by_value, self._always = {}, []
        for entry in kept:
            self.add(entry)
        self.forget()

    def forget(self) -> None:
        """The previous value is no longer trusted: the next change looks at every trigger."""
        self.last = _UNSEEN
        self.gap = None

    def _set_gap(self, value: float) -> None:
        points = self._points
        at = bisect.bisect_left(points, value)
        if self._always or (at < len(points) and points[at] == value):
            self.gap = None  # always-looked-at triggers, or on a critical value: no shortcut
            return
        low = points[at - 1] if at > 0 else -math.inf
        self.gap = (low, points[at] if at < len(points) else math.inf)

    def affected(self, new: Value) -> list[Entry]:
        old, self.last = self.last, new
        if old is _UNSEEN:
            return self.entries
        if self.kind is SignalKind.NUMBER:
            if old.__class__ not in _NUMBERS or new.__class__ not in _NUMBERS:
                self.gap = None
                return self.entries
            low, high = (old, new) if old <= new else (new, old)
            points = self._points
            start = bisect.bisect_left(points, low)
            stop = bisect.bisect_right(points, high, start)
            found = self._at_point[start:stop] if stop > start else []
            self._set_gap(float(new))
        else:
            by_value = self._by_value
            found = by_value.get(old, []) + by_value.get(new, [])  # type: ignore[arg-type]
        if self._always:
            found = found + self._always
        if len(found) > 1:  # a trigger may have several critical values in the range
            unique = {id(e[2]): e for e in found}
            found = list(unique.values())
        return found
