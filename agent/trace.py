"""What a replay saw and decided, over time: the decoded values of the signals the monitors read,
the GPS fixes, each trigger's and expression's truth, and every event (issue 18).

``replay --trace`` prints it as it goes (text or JSON lines); ``replay --plot`` draws it
(``agent.plot``). A ``Recorder`` watches the pipeline after each step (``run_recording``'s
observer): it compares the few names and truths it watches with what it saw last, so only
changes are recorded. A value that goes stale is recorded as unknown (None).

Pure: values and times come in; writing is the caller's ``sink``. Bounded: past
``MAX_POINTS`` recorded changes, the plot's memory stops growing (the trace still prints) and
``dropped`` counts the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from agent.model import Event, Fix, Frame, Sample, Value
from agent.monitors.engine import Engine
from agent.monitors.expr import Truth
from agent.monitors.model import Monitor
from agent.state import VehicleState
from agent.wire import event_to_dict, format_date

_UNSEEN = object()
MAX_POINTS = 500_000  # recorded changes kept for the plot (each a few dozen bytes)


@dataclass(frozen=True, slots=True)
class SignalPoint:
    t: float
    name: str
    value: Value | None  # None: unknown (stale)


@dataclass(frozen=True, slots=True)
class FixPoint:
    t: float
    latitude: float | None
    longitude: float | None
    hdop: float | None


@dataclass(frozen=True, slots=True)
class TruthPoint:
    t: float
    monitor: str
    trigger: str | None  # None: the monitor's expression
    truth: Truth


@dataclass(frozen=True, slots=True)
class EventMark:
    t: float
    monitor: str
    refresh: bool
    event: Event


@dataclass(slots=True)
class Recording:
    """Everything a replay recorded, in time order per kind."""

    monitors: list[Monitor]
    signals: list[str]  # the names watched, in plotting order
    units: dict[str, str]
    start: float | None = None
    end: float | None = None
    values: list[SignalPoint] = field(default_factory=list)
    fixes: list[FixPoint] = field(default_factory=list)
    truths: list[TruthPoint] = field(default_factory=list)
    events: list[EventMark] = field(default_factory=list)
    dropped: int = 0


P = TypeVar("P", SignalPoint, FixPoint, TruthPoint, EventMark)
Sink = Callable[[dict[str, object]], None]


class Recorder:
    """Watches an engine and its vehicle state after each pipeline step."""

    def __init__(self, engine: Engine, sink: Sink | None = None, *, keep: bool = True) -> None:
        """``sink`` gets each record as it happens (``--trace``); ``keep`` holds them in
        ``recording`` for a plot (a trace alone keeps nothing: a long drive streams)."""
        self.engine = engine
        self.sink = sink
        self.keep = keep
        monitors = sorted(engine.monitors(), key=lambda m: m.id)
        catalog = engine.catalog
        names: set[str] = set()
        for monitor in monitors:
            runtime = engine.runtime(monitor.id)
            if runtime is not None:
                names |= runtime.names
        watched = []
        for name in sorted(names):
            info = catalog.describe(name)
            if info is not None and info.source != "gps":
                watched.append(name)
        units = {n: info.unit for n in watched if (info := catalog.describe(n)) is not None}
        self.recording = Recording(monitors, watched, units)
        self._uses_fix = any(
            (r := engine.runtime(m.id)) is not None and r.uses_fix for m in monitors
        )
        self._last_values: dict[str, object] = {}
        self._last_truths: dict[tuple[str, str | None], Truth] = {}
        self._points = 0
        self._last_fix: FixPoint | None = None

    def observe(
        self,
        item: Frame | Fix | Sample | None,
        state: VehicleState,
        now: float,
        events: list[Event],
    ) -> None:
        """After a step at ``now`` (``item`` None: the deadlines run at the end)."""
        rec = self.recording
        rec.start = now if rec.start is None else rec.start
        rec.end = now
        if isinstance(item, Fix) and self._uses_fix:
            self._observe_fix(item, now)
        for name in rec.signals:
            value = state.current(name, now)
            last = self._last_values.get(name, _UNSEEN)
            if value == last and type(value) is type(last):
                continue  # unchanged
            if last is _UNSEEN and value is None:
                continue  # not known yet: nothing to say
            self._last_values[name] = value
            self._keep(rec.values, SignalPoint(now, name, value))
            self._emit({"kind": "signal", "t": now, "name": name, "value": value,
                        "unit": rec.units.get(name, "")})  # fmt: skip
        self._observe_truths(now)
        for event in events:
            at = event.event_date.timestamp()
            self._keep(rec.events, EventMark(at, event.monitor_id, event.refresh, event))
            values = [{"data": v.data, "value": v.value} for v in event.values]
            self._emit({"kind": "event", "t": at, "monitor": event.monitor_id,
                        "refresh": event.refresh, "values": values,
                        "event": event_to_dict(event)})  # fmt: skip

    def _observe_fix(self, fix: Fix, now: float) -> None:
        """A fix whose position or HDOP differs from the last one (a parked car is one line)."""
        point = FixPoint(now, fix.latitude, fix.longitude, fix.hdop)
        last = self._last_fix
        if last is not None and (last.latitude, last.longitude, last.hdop) == (
            point.latitude, point.longitude, point.hdop,
        ):  # fmt: skip
            return
        self._last_fix = point
        self._keep(self.recording.fixes, point)
        self._emit({"kind": "fix", "t": now, "latitude": fix.latitude,
                    "longitude": fix.longitude, "hdop": fix.hdop})  # fmt: skip

    def _observe_truths(self, now: float) -> None:
        for monitor in self.recording.monitors:
            runtime = self.engine.runtime(monitor.id)
            if runtime is None:
                continue
            current: list[tuple[str | None, Truth]] = list(runtime.truths.items())
            current.append((None, runtime.truth))
            for trigger, truth in current:
                key = (monitor.id, trigger)
                if key in self._last_truths and self._last_truths[key] is truth:
                    continue
                self._last_truths[key] = truth
                self._keep(self.recording.truths, TruthPoint(now, monitor.id, trigger, truth))
                self._emit({"kind": "trigger" if trigger else "expression", "t": now,
                            "monitor": monitor.id, "trigger": trigger, "truth": truth})  # fmt: skip

    def _keep(self, into: list[P], point: P) -> None:
        if not self.keep:
            return
        if self._points >= MAX_POINTS:
            self.recording.dropped += 1
            return
        self._points += 1
        into.append(point)

    def _emit(self, record: dict[str, object]) -> None:
        if self.sink is not None:
            self.sink(record)


# -- rendering ---------------------------------------------------------------------------------


def _truth_text(truth: object) -> str:
    return "unknown" if truth is None else "true" if truth else "false"


def _value_text(value: object, unit: object) -> str:
    if value is None:
        return "unknown (stale)"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit else text


def text_line(record: dict[str, object], start: float) -> str:
    """One trace record as a line: offset from the start, UTC time, then what happened."""
    t = float(record["t"])  # type: ignore[arg-type]
    when = f"+{t - start:9.3f}s {format_date(datetime.fromtimestamp(t, UTC))}"
    kind = record["kind"]
    if kind == "signal":
        return f"{when}  {record['name']} = {_value_text(record['value'], record['unit'])}"
    if kind == "fix":
        if record["latitude"] is None:
            return f"{when}  fix: no position"
        hdop = f" hdop {record['hdop']:g}" if record["hdop"] is not None else ""
        return f"{when}  fix {record['latitude']:.6f},{record['longitude']:.6f}{hdop}"
    if kind == "trigger":
        truth = _truth_text(record["truth"])
        return f"{when}  monitor {record['monitor']}: trigger {record['trigger']} -> {truth}"
    if kind == "expression":
        truth = _truth_text(record["truth"])
        return f"{when}  monitor {record['monitor']}: expression -> {truth}"
    listed = record["values"]
    assert isinstance(listed, list)
    values = ", ".join(f"{v['data']}={v['value']}" for v in listed) or "-"
    what = "REMINDER" if record["refresh"] else "EVENT"
    return f"{when}  {what} {record['monitor']} values: {values}"


def json_line(record: dict[str, object]) -> str:
    """One trace record as a JSON line (``at``: the UTC time as the wire writes it)."""
    t = float(record["t"])  # type: ignore[arg-type]
    body = {"at": format_date(datetime.fromtimestamp(t, UTC)), **record}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
