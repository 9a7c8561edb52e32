"""A reference monitor engine: the documented semantics, slow and plain (issue 19).

``docs/monitors.md`` and ``docs/monitors-time.md`` read as code, with none of the production
engine's cleverness (no index, no cached answers, no deadline heap): at every instant where
anything may happen, every trigger and every expression is computed again from the full history
of inputs. Times are integer microseconds. It reads the parsed definitions (``Monitor``) but
none of the engine's runtime code; geometry, time zones and the expression are its own.

Covered: thresholds with hysteresis, ``between``, equality and sets, ``onChange``, rates
(``risesBy``/``fallsBy``), minimum durations, staleness, circles with margin, dwell and fix age,
daily windows with their time zone and daylight-saving rules, "in use", Kleene logic, firing on
not-true -> true, re-arming only on false, reminders. Not covered: polygons, one-off windows,
``occurence``, the ``previous`` precondition, GPS speed (the differential test draws none).

Instants where the reference evaluates: each input (before it, after it, and once more after an
``onChange`` pulse has passed), each input time plus each duration a monitor names (a minimum
duration, a dwell, a fix age, a stale limit, a rate window), each window edge, and each reminder.
Between two of those instants no answer can change, so looking there is looking everywhere.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from agent.monitors.data import DataTrigger
from agent.monitors.model import Monitor
from agent.monitors.schedule import DailyWindow, TimeTrigger
from agent.monitors.zone import Circle, ZoneTrigger

US = 1_000_000
Truth = bool | None
Value = float | int | str | bool


@dataclass(frozen=True)
class Reading:
    """One frame's value of one signal."""

    t: int
    name: str
    value: Value
    max_age: int | None  # microseconds; None: never stale


@dataclass(frozen=True)
class Position:
    """One good GPS fix."""

    t: int
    latitude: float
    longitude: float


Input = Reading | Position


@dataclass(frozen=True)
class Fired:
    monitor_id: str
    t: int
    refresh: bool
    values: tuple[tuple[str, str, str | None], ...]


def us(seconds: float) -> int:
    return round(seconds * US)


# -- data triggers ---------------------------------------------------------------------------


def _number(value: Value) -> float:
    return float(value)


def _operand(text: str, value: Value) -> Value:
    if isinstance(value, bool):
        return text.lower() == "true"
    return text.lower() if isinstance(value, str) else float(text)


def _plain(value: Value) -> Value:
    return value.lower() if isinstance(value, str) else value


def _matches(trigger: DataTrigger, value: Value, held: bool) -> bool:
    """The documented test; ``held``: the trigger is true, hysteresis widens the way back."""
    op, h = trigger.op, trigger.hysteresis if held else 0.0
    if op == "equalsTo":
        return _plain(value) == _operand(trigger.values[0], value)
    if op == "notEqualTo":
        return _plain(value) != _operand(trigger.values[0], value)
    if op == "includedIn":
        return _plain(value) in {_operand(v, value) for v in trigger.values}
    x, a = _number(value), float(trigger.values[0])
    if op == "greaterThan":
        return x > a - h
    if op == "greaterOrEqual":
        return x >= a - h
    if op == "lowerThan":
        return x < a + h
    if op == "lowerOrEqual":
        return x <= a + h
    if op == "between":
        return a - h <= x <= float(trigger.values[1]) + h
    raise AssertionError(op)


def _fresh(reading: Reading, t: int) -> bool:
    return reading.max_age is None or t - reading.t <= reading.max_age


def _held_answer(trigger: DataTrigger, readings: list[Reading], t: int) -> Truth:
    """A comparison with hysteresis and a minimum duration, replayed from the first reading.

    Unknown (missing or stale) forgets everything; a duration counts from the reading that made
    the condition true; while it runs the answer is false, or unknown when what came before was
    unknown (the start-up rule of ``agent/monitors/triggers.py``)."""
    minimum = us(trigger.min_duration_s)
    answer: Truth = None
    since: int | None = None
    previous: Reading | None = None

    def elapse(at: int) -> None:
        nonlocal answer
        if since is not None and answer is not True and at >= since + minimum:
            answer = True

    for reading in readings:
        if previous is not None and not _fresh(previous, reading.t):
            answer, since = None, None  # a stale stretch before this reading
        elapse(reading.t)
        if not _matches(trigger, reading.value, answer is True):
            answer, since = False, None
        elif minimum == 0:
            answer = True
        elif since is None:
            since = reading.t
            answer = None if answer is None else False
        previous = reading
    if previous is None or not _fresh(previous, t):
        return None
    elapse(t)
    return answer


def _rate_answer(trigger: DataTrigger, readings: list[Reading], t: int) -> Truth:
    """risesBy / fallsBy: the value now against the lowest (highest) value held at any instant
    of the last ``withinSeconds`` (a value is held from its change to the next change)."""
    if not readings or not _fresh(readings[-1], t):
        return None
    changes: list[tuple[int, float]] = []
    for reading in readings:
        if not changes or changes[-1][1] != _number(reading.value):
            changes.append((reading.t, _number(reading.value)))
    within = us(trigger.within_s or 0.0)
    held = [
        value
        for i, (_, value) in enumerate(changes)
        if i == len(changes) - 1 or changes[i + 1][0] > t - within
    ]
    now = changes[-1][1]
    delta = trigger.delta or 0.0
    if trigger.op == "risesBy":
        return now - min(held) >= delta
    return max(held) - now >= delta


def _pulse_answer(readings: list[Reading], t: int, pulse: Reading | None) -> Truth:
    """onChange: true right after a reading whose value differs from the one before it."""
    if not readings or not _fresh(readings[-1], t):
        return None
    last = readings[-1]
    if pulse is not last or len(readings) < 2:
        return False
    return readings[-2].value != last.value


# -- zones -------------------------------------------------------------------------------------

EARTH_RADIUS_M = 6_371_008.8


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _zone_answer(trigger: ZoneTrigger, fixes: list[Position], t: int) -> Truth:
    """Inside with the margin as hysteresis (the first decision by the exact edge), the fix age
    gate (a failing fix decides nothing), and the dwell counted from the fix that changed it."""
    circle = trigger.place
    assert isinstance(circle, Circle)
    inside: bool | None = None
    since, seen_start = 0, False
    for fix in fixes:
        d = distance_m(circle.latitude, circle.longitude, fix.latitude, fix.longitude)
        r, m = circle.radius_m, trigger.margin_m
        now_inside = d <= r if inside is None else (d <= r + m if inside else d <= r - m)
        if now_inside != inside:
            seen_start, since, inside = inside is not None, fix.t, now_inside
    if not fixes or t - fixes[-1].t > us(trigger.gate.max_fix_age_s):
        return None
    wanted = inside if trigger.transition == "In" else not inside
    if wanted and t < since + us(trigger.min_dwell_s):
        return False if seen_start else None
    return wanted


# -- time windows ------------------------------------------------------------------------------


def local_instant(wall: datetime, tz: ZoneInfo) -> int:
    """The earliest instant whose local wall time is at or after ``wall``: a time that happens
    twice means its first occurrence, one in the spring-forward gap the instant of the change."""
    found = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=tz, fold=fold)
        if moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            found.append(moment.astimezone(UTC))
    if found:
        return us(min(found).timestamp())
    low, high = sorted(us(wall.replace(tzinfo=tz, fold=f).timestamp()) for f in (0, 1))
    while high - low > US:  # the wall clock jumps over ``wall`` between the two readings
        middle = (low + high) // 2 // US * US
        wall_then = datetime.fromtimestamp(middle / US, tz).replace(tzinfo=None)
        low, high = (middle, high) if wall_then < wall else (low, middle)
    return high


def window_spans(window: DailyWindow, zone: str, around: int) -> list[tuple[int, int]]:
    """[open, close) of the windows opening on the local days around an instant."""
    today = datetime.fromtimestamp(around / US, ZoneInfo(zone)).date()
    return [_span(window, zone, today + timedelta(days=offset)) for offset in range(-3, 2)]


@functools.cache  # a pure function of its arguments: computed once per day
def _span(window: DailyWindow, zone: str, day: date) -> tuple[int, int]:
    tz = ZoneInfo(zone)
    wall = datetime(day.year, day.month, day.day) + timedelta(seconds=window.start_s)
    close = wall + timedelta(seconds=window.duration_s)
    return local_instant(wall, tz), local_instant(close, tz)


def _time_answer(trigger: TimeTrigger, running: list[Reading], t: int) -> Truth:
    inside = any(
        start <= t < end
        for window in trigger.windows
        if isinstance(window, DailyWindow)
        for start, end in window_spans(window, trigger.time_zone, t)
    )
    if not inside:
        return False
    if not trigger.require_in_use:
        return True
    if not running or not _fresh(running[-1], t):
        return None
    return bool(running[-1].value)


# -- expressions -------------------------------------------------------------------------------


def kleene(expression: str, answers: dict[str, Truth]) -> Truth:
    """``!`` binds tightest, then ``&``, then ``|``; unknown is None."""
    tokens = expression.replace("(", " ( ").replace(")", " ) ").replace("!", " ! ")
    tokens = tokens.replace("&", " & ").replace("|", " | ")
    items = tokens.split()
    pos = 0

    def atom() -> Truth:
        nonlocal pos
        token = items[pos]
        pos += 1
        if token == "!":
            value = atom()
            return None if value is None else not value
        if token == "(":
            value = either()
            pos += 1  # ")"
            return value
        return answers[token]

    def both() -> Truth:
        nonlocal pos
        values = [atom()]
        while pos < len(items) and items[pos] == "&":
            pos += 1
            values.append(atom())
        return False if False in values else None if None in values else True

    def either() -> Truth:
        nonlocal pos
        values = [both()]
        while pos < len(items) and items[pos] == "|":
            pos += 1
            values.append(both())
        return True if True in values else None if None in values else False

    return either()


# -- the engine --------------------------------------------------------------------------------


def literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Reference:
    def __init__(self, monitors: Iterable[Monitor], in_use: str) -> None:
        self.monitors = list(monitors)
        self.in_use = in_use

    def answers(
        self, monitor: Monitor, history: list[Input], t: int, pulse: Reading | None
    ) -> dict[str, Truth]:
        out: dict[str, Truth] = {}
        for trigger in monitor.triggers:
            if isinstance(trigger, ZoneTrigger):
                fixes = [i for i in history if isinstance(i, Position)]
                out[trigger.name] = _zone_answer(trigger, fixes, t)
            elif isinstance(trigger, TimeTrigger):
                out[trigger.name] = _time_answer(trigger, self._readings(history, self.in_use), t)
            else:
                readings = self._readings(history, trigger.data)
                if trigger.op == "onChange":
                    out[trigger.name] = _pulse_answer(readings, t, pulse)
                elif trigger.op in ("risesBy", "fallsBy"):
                    out[trigger.name] = _rate_answer(trigger, readings, t)
                else:
                    out[trigger.name] = _held_answer(trigger, readings, t)
        return out

    @staticmethod
    def _readings(history: list[Input], name: str) -> list[Reading]:
        return [i for i in history if isinstance(i, Reading) and i.name == name]

    def _durations(self) -> tuple[set[int], set[int]]:
        """What may end by itself after a reading (a minimum duration, a rate window) and
        after a fix (a dwell, the fix growing too old)."""
        after_reading, after_fix = {0}, {0}
        for monitor in self.monitors:
            for trigger in monitor.triggers:
                if isinstance(trigger, DataTrigger):
                    after_reading |= {us(trigger.min_duration_s), us(trigger.within_s or 0.0)}
                elif isinstance(trigger, ZoneTrigger):
                    after_fix |= {us(trigger.min_dwell_s), us(trigger.gate.max_fix_age_s) + 1}
        return after_reading, after_fix

    def instants(self, inputs: list[Input], start: int, end: int) -> list[int]:
        """Every instant where an answer may change by itself (besides the inputs)."""
        found = {start, end}
        after_reading, after_fix = self._durations()
        for item in inputs:
            if isinstance(item, Position):
                found |= {item.t + d for d in after_fix}
                continue
            found |= {item.t + d for d in after_reading}
            if item.max_age is not None:
                found.add(item.t + item.max_age + 1)  # stale from there
        for monitor in self.monitors:
            for trigger in monitor.triggers:
                if isinstance(trigger, TimeTrigger):
                    for window in trigger.windows:
                        assert isinstance(window, DailyWindow)
                        for edge in (start, end):
                            spans = window_spans(window, trigger.time_zone, edge)
                            found |= {x for span in spans for x in span}
        return sorted(x for x in found if start <= x <= end)

    def run(self, inputs: list[Input], start: int, end: int) -> list[Fired]:
        """The events of a drive: ``inputs`` in time order, watched from ``start`` to ``end``."""
        fired = {m.id: False for m in self.monitors}
        last: dict[str, int | None] = {m.id: None for m in self.monitors}
        events: list[Fired] = []
        by_time: dict[int, list[Input]] = {}
        for item in inputs:
            by_time.setdefault(item.t, []).append(item)
        queue = sorted(set(self.instants(inputs, start, end)) | set(by_time))
        history: list[Input] = []
        done: set[int] = set()

        def decide(t: int, pulse: Reading | None) -> None:
            for monitor in self.monitors:
                answers = self.answers(monitor, history, t, pulse)
                truth = kleene(monitor.bool_exp, answers)
                every = monitor.subscribe.refresh_event
                previous = last[monitor.id]
                if truth is True and not fired[monitor.id]:
                    refresh = False
                elif truth is True and every and previous is not None and t >= previous + us(every):
                    refresh = True
                else:
                    if truth is False:
                        fired[monitor.id] = False
                    continue
                fired[monitor.id], last[monitor.id] = True, t
                values = self._values(monitor, answers, history)
                events.append(Fired(monitor.id, t, refresh, values))
                if every:
                    heapq.heappush(queue, t + us(every))

        while queue:
            t = heapq.heappop(queue)
            if t in done or t > end:
                continue
            done.add(t)
            decide(t, None)  # deadlines due at t, before the inputs of t
            for item in by_time.get(t, []):
                history.append(item)
                pulse = item if isinstance(item, Reading) else None
                decide(t, pulse)
                if pulse is not None:
                    decide(t, None)  # the onChange pulse is over
        return events

    def _values(
        self, monitor: Monitor, answers: dict[str, Truth], history: list[Input]
    ) -> tuple[tuple[str, str, str | None], ...]:
        """``values[]``: each true data trigger's current value (and the one before the change,
        for onChange)."""
        out = []
        for trigger in monitor.triggers:
            if isinstance(trigger, DataTrigger) and answers[trigger.name] is True:
                readings = self._readings(history, trigger.data)
                current = readings[-1].value
                before = None
                if trigger.op == "onChange":
                    changed = [r for r in readings if r.value != current]
                    before = literal(changed[-1].value) if changed else None
                out.append((trigger.data, literal(current), before))
        return tuple(out)
