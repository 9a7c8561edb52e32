"""The runtime side of triggers: each trigger of a monitor keeps a little memory and answers
true / false / unknown at ``now``, plus the next time its answer may change by itself.

Start-up rule: a dwell (``minDwellSeconds``) or a minimum duration (``minDurationSeconds``) that
began before the engine saw it is *unknown* until it has elapsed, not false: false would re-arm a
monitor that fired before a restart and fire it a second time.

Deadlines are integer microseconds (``agent.instants``), each the first instant at which the
answer may change: a dwell that began at ``since`` holds at ``since + dwell``.
"""

from __future__ import annotations

from agent.instants import to_us
from agent.model import EventValue
from agent.monitors.conditions import PAST_US, Context, DataState
from agent.monitors.expr import Truth
from agent.monitors.schedule import Schedule, TimeTrigger
from agent.monitors.signals import in_use
from agent.monitors.zone import ZoneShape, ZoneTrigger

__all__ = ["PAST_US", "Context", "DataState", "TimeState", "TriggerState", "ZoneState"]


class ZoneState:
    def __init__(self, trigger: ZoneTrigger) -> None:
        self.trigger = trigger
        self.shape = ZoneShape(trigger)
        self.names: frozenset[str] = frozenset()
        self.uses_fix = True
        self.has_deadlines = True
        self.was_inside: bool | None = None
        self.since: int | None = None  # when the current inside/outside state began (us)
        self.seen_start = False  # the engine saw the current state begin
        self.dwell_us = to_us(trigger.min_dwell_s)
        self.max_fix_age_us = to_us(trigger.gate.max_fix_age_s)
        self._deadline: int | None = None

    def evaluate(self, ctx: Context) -> Truth:
        fix = ctx.state.fix
        inside = self.shape.inside(fix, ctx.now, self.was_inside)
        self._deadline = None
        if inside is None:
            return None
        if fix is not None:
            self._deadline = to_us(fix.timestamp) + self.max_fix_age_us + PAST_US
        if inside != self.was_inside:
            self.seen_start = self.was_inside is not None
            self.was_inside = inside
            self.since = ctx.now_us
        wanted = inside if self.trigger.transition == "In" else not inside
        dwell = self.dwell_us
        if not wanted or not dwell or self.since is None:
            return wanted
        end = self.since + dwell  # the deadline and the test are the same integer
        if ctx.now_us >= end:
            return wanted
        self._deadline = end if self._deadline is None else min(self._deadline, end)
        return False if self.seen_start else None

    def deadline(self) -> int | None:
        return self._deadline

    def resume(self) -> None:
        """Nothing to forget: the zone's memory is about fixes."""

    def value(self, ctx: Context) -> EventValue | None:
        return None


class TimeState:
    def __init__(self, trigger: TimeTrigger, in_use_name: str) -> None:
        self.trigger = trigger
        self.schedule = Schedule(trigger)
        self.in_use_name = in_use_name if trigger.require_in_use else None
        self.names = frozenset({in_use_name}) if trigger.require_in_use else frozenset()
        self.uses_fix = False
        self.has_deadlines = True
        self._boundary: int | None = None  # microseconds
        self._computed_at: int | None = None
        self._inside = False

    def evaluate(self, ctx: Context) -> Truth:
        now = ctx.now_us
        if (
            self._computed_at is None
            or now < self._computed_at
            or (self._boundary is not None and now >= self._boundary)
        ):  # inside/outside changes only at a boundary: compute both there
            boundary = self.schedule.next_boundary(ctx.now)
            self._boundary = None if boundary is None else to_us(boundary)
            self._inside = self.schedule.inside(ctx.now)
            self._computed_at = now
        if not self._inside:
            return False
        if self.in_use_name is None:
            return True
        return in_use(ctx.state.current(self.in_use_name, ctx.now))

    def deadline(self) -> int | None:
        return self._boundary

    def resume(self) -> None:
        """Nothing to forget: "in use" is read afresh at every evaluation."""

    def value(self, ctx: Context) -> EventValue | None:
        return None


TriggerState = ZoneState | TimeState | DataState
