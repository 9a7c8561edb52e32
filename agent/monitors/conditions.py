"""The runtime of a data trigger: its value test, hysteresis, durations, rates and ``previous``.

This is the engine's hot path (every changed signal reaches the triggers that read it), so the
common case is kept short: a plain comparison is a precompiled one-argument test (C-level
``operator`` partials), tried directly on the state's value when it already has the signal's
type. Rates keep a monotonic window (amortised O(1) per change) instead of scanning history.

Time (issue 19): durations, rate windows and ages are compared on integer microseconds
(``agent.instants``), and every deadline is the first microsecond at which the answer may change,
so a trigger evaluated at its deadline sees the change there (``since + minimum`` is due at
``since + minimum``; data older than its limit is stale one microsecond after it).
"""

from __future__ import annotations

import operator
from collections import deque
from dataclasses import dataclass

from agent.instants import SLACK_S, to_us
from agent.model import EventValue, SignalInfo, SignalKind, Value
from agent.monitors.data import (
    COMPARISONS,
    DataTrigger,
    Test,
    as_kind,
    convert,
    literal,
    operands,
)
from agent.monitors.expr import Truth
from agent.monitors.signals import GPS_MAX_AGE_S, gps_value
from agent.state import VehicleState

# Staleness and ages compare with ">": the first instant past a limit is one microsecond after.
PAST_US = 1
_NATIVE: dict[SignalKind, tuple[type, ...]] = {
    SignalKind.NUMBER: (float, int),
    SignalKind.BOOLEAN: (bool,),
    SignalKind.ENUM: (str,),
}


@dataclass(slots=True)
class Context:
    state: VehicleState
    now: float
    changed: frozenset[str] | set[str]  # names whose value just changed (onChange pulses)
    now_us: int  # ``now`` in whole microseconds: every deadline comparison uses it


def compile_test(op: str, args: tuple[Value, ...], widen: float = 0.0) -> Test:
    """``value -> bool`` for a comparison; ``widen`` moves thresholds the way back (hysteresis)."""
    return COMPARISONS[op](args, widen)


class RateWindow:
    """Lowest (risesBy) or highest (fallsBy) value held at any time in the last ``within`` s.

    Entries are [start, value, end] (times in microseconds): a value is held from its change
    until the next change; one that ended at or before ``now - within`` has left the window. A
    monotonic deque keeps only values that can still be the extreme."""

    def __init__(self, within: float, lowest: bool) -> None:
        self.within = to_us(within)
        self.better = operator.le if lowest else operator.ge
        self.items: deque[list[float | None]] = deque()
        self.last: list[float | None] | None = None

    def add(self, start: int, value: float) -> None:
        if self.last is not None and self.last[1] == value:
            return
        if self.last is not None:
            self.last[2] = start
        items = self.items
        while items and self.better(value, items[-1][1]):  # type: ignore[arg-type]
            items.pop()
        entry: list[float | None] = [start, value, None]
        items.append(entry)
        self.last = entry

    def extreme(self, now: int) -> tuple[float, int | None]:
        """The extreme value, and when it may change by itself (None: only on a new value);
        ``now`` and the answer in microseconds."""
        items = self.items
        while len(items) > 1 and items[0][2] is not None and items[0][2] <= now - self.within:
            items.popleft()
        end = items[0][2]
        value = items[0][1]
        assert value is not None
        return value, None if end is None else int(end) + self.within


class DataState:
    def __init__(self, trigger: DataTrigger, info: SignalInfo | None) -> None:
        self.trigger = trigger
        self.info = info
        self.gps = info is not None and info.source == "gps"
        self.names = frozenset() if self.gps else frozenset({trigger.data})
        self.uses_fix = self.gps
        op = trigger.op
        args = operands(trigger, info) if info is not None else ()
        self.operands = args
        self.test: Test | None = None
        self.hold: Test | None = None  # the test while true (hysteresis widens it)
        if info is not None and op not in ("onChange", "risesBy", "fallsBy"):
            self.test = compile_test(op, args)
            self.hold = compile_test(op, args, trigger.hysteresis) if trigger.hysteresis else None
        self.native = _NATIVE[info.kind] if info is not None else ()
        self.simple = (
            self.test is not None
            and not self.gps
            and not trigger.min_duration_s
            and trigger.previous is None
        )
        self.has_deadlines = not self.simple
        previous = trigger.previous.values if trigger.previous and info is not None else ()
        self.previous_ok = frozenset(convert(v, info) for v in previous) if info else frozenset()
        self.rate = (
            RateWindow(trigger.within_s or 0.0, op == "risesBy")
            if op in ("risesBy", "fallsBy")
            else None
        )
        self.last: Truth = None
        self.min_duration_us = to_us(trigger.min_duration_s)
        self.since: int | None = None  # raw condition true since, microseconds (minDuration)
        self.seen_start = False
        self.blocked = False  # `previous` failed at the transition: false until raw is false
        self._deadline: int | None = None

    def evaluate(self, ctx: Context) -> Truth:
        if self.simple:  # the hot path: a plain comparison on a fresh value
            cell = ctx.state.get(self.trigger.data)
            if cell is None or (
                cell.max_age is not None
                and ctx.now - cell.timestamp > cell.max_age - SLACK_S  # cheap test first
                and cell.stale(ctx.now)
            ):
                self.last = None
                return None
            value = cell.value
            if value.__class__ not in self.native:
                converted = as_kind(value, self.info) if self.info is not None else None
                if converted is None:
                    self.last = None
                    return None
                value = converted
            test = self.hold if self.hold is not None and self.last is True else self.test
            assert test is not None
            try:
                result = test(value)
            except TypeError:
                result = False
            self.last = result
            return result
        return self._evaluate(ctx)

    def resume(self) -> None:
        """The data was unknown (stale) until now: forget what held before the stretch."""
        self.last = None
        self.since = None

    def _read(self, ctx: Context) -> tuple[Value, Value | None, float] | None:
        if self.gps:
            found = gps_value(self.trigger.data, ctx.state.fix, ctx.now)
            fix = ctx.state.fix
            if found is None or fix is None:
                return None
            self._soon(to_us(fix.timestamp) + to_us(GPS_MAX_AGE_S) + PAST_US)
            return found, None, fix.timestamp
        cell = ctx.state.get(self.trigger.data)
        if cell is None or cell.stale(ctx.now):
            return None
        return cell.value, cell.previous, cell.changed_at

    def _evaluate(self, ctx: Context) -> Truth:
        self._deadline = None
        info = self.info
        read = self._read(ctx) if info is not None else None
        value = None if read is None or info is None else as_kind(read[0], info)
        if read is None or info is None or value is None:
            self.since = None
            self.last = None
            return None
        _, previous, changed_at = read
        raw = self._raw(value, previous, changed_at, ctx)
        result = self._durations(raw, ctx.now_us)
        if result and self.last is not True and not self._previous_ok(previous, info):
            self.blocked = True
        if not raw:
            self.blocked = False
        if self.blocked and result:
            result = False
        self.last = result
        return result

    def _raw(self, value: Value, previous: Value | None, changed_at: float, ctx: Context) -> bool:
        trigger = self.trigger
        if trigger.op == "onChange":  # a frame that only brings a stale signal back is no change
            cell = ctx.state.get(trigger.data)
            return (
                trigger.data in ctx.changed
                and previous is not None
                and cell is not None
                and cell.changed_at == cell.timestamp
            )
        if self.rate is not None:
            number = float(value)
            self.rate.add(to_us(changed_at), number)
            extreme, when = self.rate.extreme(ctx.now_us)
            if when is not None:
                self._soon(when)
            delta = trigger.delta or 0.0
            return (
                number - extreme >= delta if trigger.op == "risesBy" else extreme - number >= delta
            )
        test = self.hold if self.hold is not None and self.last is True else self.test
        assert test is not None
        try:
            return test(value)
        except TypeError:
            return False

    def _durations(self, raw: bool, now_us: int) -> bool | None:
        minimum = self.min_duration_us
        if not raw:
            self.since = None
            return False
        if not minimum:
            return True
        if self.since is None:
            self.since = now_us
            self.seen_start = self.last is not None
        due = self.since + minimum  # the deadline and the test are the same integer
        if now_us >= due:
            return True
        self._soon(due)
        return False if self.seen_start else None

    def _soon(self, when: int) -> None:
        self._deadline = when if self._deadline is None else min(self._deadline, when)

    def _previous_ok(self, previous: Value | None, info: SignalInfo) -> bool:
        if self.trigger.previous is None:
            return True
        if previous is None:
            return False
        return as_kind(previous, info) in self.previous_ok

    def deadline(self) -> int | None:
        """When the answer may change by itself, in microseconds (None: only on new data)."""
        return None if self.simple else self._deadline

    def value(self, ctx: Context) -> EventValue | None:
        """The ``values[]`` entry when this trigger is true."""
        if self.last is not True:
            return None
        read = self._read(ctx)
        if read is None:
            return None
        current, previous, _ = read
        show_previous = self.trigger.previous is not None or self.trigger.op == "onChange"
        return EventValue(
            self.trigger.data,
            literal(current),
            literal(previous) if show_previous and previous is not None else None,
        )
