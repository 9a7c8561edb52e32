"""The runtime side of triggers: each trigger of a monitor keeps a little memory and answers
true / false / unknown at ``now``, plus the next time its answer may change by itself.

Registry ``STATE_KINDS`` maps a trigger class to its state class (a plain dict, STYLE §7).

Start-up rule: a dwell (``minDwellSeconds``) or a minimum duration (``minDurationSeconds``) that
began before the engine saw it is *unknown* until it has elapsed, not false: false would re-arm a
monitor that fired before a restart and fire it a second time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from agent.model import EventValue, SignalInfo, Value
from agent.monitors.data import COMPARISONS, DataTrigger, as_kind, convert, literal, operands
from agent.monitors.expr import Truth
from agent.monitors.schedule import Schedule, TimeTrigger
from agent.monitors.signals import GPS_MAX_AGE_S, gps_value, in_use
from agent.monitors.zone import ZoneShape, ZoneTrigger
from agent.state import VehicleState

# A deadline a little after the exact instant: staleness and ages compare with ">".
EPSILON_S = 0.001


@dataclass(slots=True)
class Context:
    state: VehicleState
    now: float
    changed: frozenset[str] | set[str]  # names whose value just changed (onChange pulses)


class ZoneState:
    def __init__(self, trigger: ZoneTrigger) -> None:
        self.trigger = trigger
        self.shape = ZoneShape(trigger)
        self.names: frozenset[str] = frozenset()
        self.uses_fix = True
        self.was_inside: bool | None = None
        self.since: float | None = None  # when the current inside/outside state began
        self.seen_start = False  # the engine saw the current state begin
        self._deadline: float | None = None

    def evaluate(self, ctx: Context) -> Truth:
        fix = ctx.state.fix
        inside = self.shape.inside(fix, ctx.now, self.was_inside)
        self._deadline = None
        if inside is None:
            return None
        if fix is not None:
            self._deadline = fix.timestamp + self.trigger.gate.max_fix_age_s + EPSILON_S
        if inside != self.was_inside:
            self.seen_start = self.was_inside is not None
            self.was_inside = inside
            self.since = ctx.now
        wanted = inside if self.trigger.transition == "In" else not inside
        dwell = self.trigger.min_dwell_s
        if not wanted or not dwell or self.since is None or ctx.now - self.since >= dwell:
            return wanted
        end = self.since + dwell
        self._deadline = end if self._deadline is None else min(self._deadline, end)
        return False if self.seen_start else None

    def deadline(self) -> float | None:
        return self._deadline

    def value(self, ctx: Context) -> EventValue | None:
        return None


class TimeState:
    def __init__(self, trigger: TimeTrigger, in_use_name: str) -> None:
        self.trigger = trigger
        self.schedule = Schedule(trigger)
        self.in_use_name = in_use_name if trigger.require_in_use else None
        self.names = frozenset({in_use_name}) if trigger.require_in_use else frozenset()
        self.uses_fix = False
        self._boundary: float | None = None
        self._computed_at: float | None = None

    def evaluate(self, ctx: Context) -> Truth:
        now = ctx.now
        if (
            self._computed_at is None
            or now < self._computed_at
            or (self._boundary is not None and now >= self._boundary)
        ):
            self._boundary = self.schedule.next_boundary(now)
            self._computed_at = now
        if not self.schedule.inside(now):
            return False
        if self.in_use_name is None:
            return True
        return in_use(ctx.state.current(self.in_use_name, now))

    def deadline(self) -> float | None:
        return self._boundary

    def value(self, ctx: Context) -> EventValue | None:
        return None


class DataState:
    def __init__(self, trigger: DataTrigger, info: SignalInfo | None) -> None:
        self.trigger = trigger
        self.info = info
        self.gps = info is not None and info.source == "gps"
        self.names = frozenset() if self.gps else frozenset({trigger.data})
        self.uses_fix = self.gps
        self.operands: tuple[Value, ...] = operands(trigger, info) if info is not None else ()
        self.previous_ok: frozenset[Value] = (
            frozenset(
                convert(v, info) for v in (trigger.previous.values if trigger.previous else ())
            )
            if info is not None
            else frozenset()
        )
        self.last: Truth = None
        self.since: float | None = None  # raw condition true since (minDurationSeconds)
        self.seen_start = False
        self.blocked = False  # `previous` failed at the transition: false until raw is false
        self.history: deque[tuple[float, float]] = deque()  # risesBy/fallsBy: (time, value)
        self._deadline: float | None = None

    def _read(self, ctx: Context) -> tuple[Value, Value | None, float] | None:
        if self.gps:
            found = gps_value(self.trigger.data, ctx.state.fix, ctx.now)
            fix = ctx.state.fix
            if found is None or fix is None:
                return None
            self._deadline = fix.timestamp + GPS_MAX_AGE_S + EPSILON_S
            return found, None, fix.timestamp
        cell = ctx.state.get(self.trigger.data)
        if cell is None or cell.stale(ctx.now):
            return None
        return cell.value, cell.previous, cell.changed_at

    def evaluate(self, ctx: Context) -> Truth:
        self._deadline = None
        info = self.info
        read = self._read(ctx) if info is not None else None
        if read is None or info is None:
            self.since = None
            self.last = None
            return None
        raw_value, previous, changed_at = read
        value = as_kind(raw_value, info)
        if value is None:
            self.last = None
            return None
        raw = self._raw(value, previous, changed_at, ctx)
        result = self._durations(raw, ctx.now)
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
        op = trigger.op
        if op == "onChange":
            return trigger.data in ctx.changed and previous is not None
        if op in ("risesBy", "fallsBy"):
            return self._rate(float(value), changed_at, ctx.now)
        test = COMPARISONS[op]
        try:
            return test(value, self.operands, self.last is True, trigger.hysteresis)
        except (TypeError, ValueError):
            return False

    def _rate(self, value: float, changed_at: float, now: float) -> bool:
        trigger = self.trigger
        within = trigger.within_s or 0.0
        history = self.history
        if not history or history[-1][1] != value:
            history.append((changed_at, value))
        while len(history) > 1 and history[1][0] <= now - within:
            history.popleft()
        if len(history) > 1:
            self._soon(history[1][0] + within + EPSILON_S)
        delta = trigger.delta or 0.0
        values = [v for _, v in history]
        if trigger.op == "risesBy":
            return value - min(values) >= delta
        return max(values) - value >= delta

    def _durations(self, raw: bool, now: float) -> bool | None:
        minimum = self.trigger.min_duration_s
        if not raw:
            self.since = None
            return False
        if not minimum:
            return True
        if self.since is None:
            self.since = now
            self.seen_start = self.last is not None
        if now - self.since >= minimum:
            return True
        self._soon(self.since + minimum)
        return False if self.seen_start else None

    def _soon(self, when: float) -> None:
        self._deadline = when if self._deadline is None else min(self._deadline, when)

    def _previous_ok(self, previous: Value | None, info: SignalInfo) -> bool:
        if self.trigger.previous is None:
            return True
        if previous is None:
            return False
        return as_kind(previous, info) in self.previous_ok

    def deadline(self) -> float | None:
        return self._deadline

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


TriggerState = ZoneState | TimeState | DataState
