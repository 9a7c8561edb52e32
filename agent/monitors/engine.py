"""The monitor engine: triggers -> three-valued expression -> events. Pure: ``now`` comes in.

Firing (SPEC §2): when a monitor's expression goes from not-true to *true*, one event with
``refresh=false``; while it stays true, a reminder (``refresh=true``) once ``refreshEvent``
seconds have passed since the last event; it re-arms only when the expression is *false*.
Unknown (missing or stale data, a fix failing the quality gate) neither fires nor re-arms.
The fired flag and the last event time go through a ``FiredStore`` (saved before the events
are returned), so a restart inside a zone sends no duplicate. A paused monitor is not evaluated.

Work is proportional to what changes: ``on_change`` re-evaluates only monitors that read a
changed name, ``on_fix`` only those that read the position; time windows, dwell, minimum
durations, rate windows, reminders and staleness run from a heap of deadlines (``tick``).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from agent.model import Event, EventValue, Extension
from agent.monitors.data import DataTrigger
from agent.monitors.expr import Truth, evaluate
from agent.monitors.extensions import snapshot, wanted_for
from agent.monitors.model import Catalog, Monitor
from agent.monitors.schedule import TimeTrigger
from agent.monitors.signals import GpsCatalog, resolve_in_use, with_gps
from agent.monitors.triggers import (
    EPSILON_S,
    Context,
    DataState,
    TimeState,
    TriggerState,
    ZoneState,
)
from agent.monitors.zone import ZoneTrigger
from agent.state import VehicleState
from agent.wire import uuid7

log = logging.getLogger(__name__)

STALE_RECHECK_S = 1.0  # while a name is stale, look every second whether frames came back


@dataclass(frozen=True, slots=True)
class FiredState:
    """What survives a restart, per monitor (JSON-friendly: the daemon stores ``asdict``)."""

    fired: bool
    last_event: float | None = None  # time of the last event (first firing or reminder)


class FiredStore(Protocol):
    def load(self, monitor_id: str) -> FiredState | None: ...
    def save(self, monitor_id: str, state: FiredState) -> None: ...
    def delete(self, monitor_id: str) -> None: ...


class Sequence(Protocol):
    def next(self) -> int: ...


class MemoryFiredStore:
    def __init__(self) -> None:
        self.states: dict[str, FiredState] = {}

    def load(self, monitor_id: str) -> FiredState | None:
        return self.states.get(monitor_id)

    def save(self, monitor_id: str, state: FiredState) -> None:
        self.states[monitor_id] = state

    def delete(self, monitor_id: str) -> None:
        self.states.pop(monitor_id, None)


class MemorySequence:
    def __init__(self, start: int = 1) -> None:
        self.value = start - 1

    def next(self) -> int:
        self.value += 1
        return self.value


class SeededIds:
    """Reproducible UUIDv7-shaped event ids: the event time's milliseconds + a hash of a seed and
    a counter. For replay, where the same recording must give the same output."""

    def __init__(self, seed: str = "edgemon") -> None:
        self.seed = seed
        self.count = 0

    def __call__(self, now: float) -> str:
        self.count += 1
        digest = hashlib.sha256(f"{self.seed}:{self.count}".encode()).digest()
        value = (int(now * 1000) & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= (int.from_bytes(digest[:2], "big") & 0xFFF) << 64
        value |= 0b10 << 62
        value |= int.from_bytes(digest[2:10], "big") & ((1 << 62) - 1)
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _random_ids(now: float) -> str:
    return uuid7(int(now * 1000))


class _Runtime:
    """One monitor's trigger states and firing memory."""

    def __init__(
        self, monitor: Monitor, states: dict[str, TriggerState], fired: FiredState
    ) -> None:
        self.monitor = monitor
        self.states = states
        self.fired = fired.fired
        self.last_event = fired.last_event
        self.truth: Truth = None
        self.names: frozenset[str] = frozenset().union(*(s.names for s in states.values()))
        self.uses_fix = any(s.uses_fix for s in states.values())
        self.pulses = frozenset(
            s.trigger.data
            for s in states.values()
            if isinstance(s, DataState) and s.trigger.op == "onChange"
        )
        self.order = 0  # registration order: events of one input come out in this order
        self.version = 0  # bumps when its deadline is rescheduled (stale heap entries)
        self.deadline: float | None = None


class Engine:
    def __init__(
        self,
        vin: str,
        fleet_id: str | None,
        catalog: Catalog | None,
        fired_store: FiredStore,
        sequence: Sequence,
        *,
        in_use_name: str | None = None,
        event_ids: Callable[[float], str] | None = None,
    ) -> None:
        self.vin = vin
        self.fleet_id = fleet_id
        self.catalog: GpsCatalog = with_gps(catalog)
        self.fired_store = fired_store
        self.sequence = sequence
        self.in_use_name = resolve_in_use(self.catalog.base, in_use_name)
        self.event_ids = event_ids or _random_ids
        self.counters: dict[str, int] = {"evaluations": 0, "events": 0, "reminders": 0}
        self._runtimes: dict[str, _Runtime] = {}
        self._by_name: dict[str, dict[str, _Runtime]] = {}
        self._by_fix: dict[str, _Runtime] = {}
        self._heap: list[tuple[float, int, str, int]] = []  # (when, tiebreak, id or name, version)
        self._tiebreak = 0
        self._order = 0
        self._name_watch: dict[str, float] = {}  # name -> when it goes stale (or recheck)

    # -- monitors ------------------------------------------------------------------------------

    def set_monitor(self, monitor: Monitor) -> None:
        """Add or replace a monitor (already validated against this engine's ``catalog``)."""
        self.remove_monitor(monitor.id, forget=False)
        states: dict[str, TriggerState] = {}
        for trigger in monitor.triggers:
            if isinstance(trigger, ZoneTrigger):
                states[trigger.name] = ZoneState(trigger)
            elif isinstance(trigger, TimeTrigger):
                states[trigger.name] = TimeState(trigger, self.in_use_name)
            else:
                states[trigger.name] = DataState(trigger, self.catalog.describe(trigger.data))
        fired = self.fired_store.load(monitor.id) or FiredState(False)
        runtime = _Runtime(monitor, states, fired)
        self._order += 1
        runtime.order = self._order
        self._runtimes[monitor.id] = runtime
        if monitor.paused:
            return
        # evaluated at the next tick, whatever ``now`` is then (time-only monitors need it)
        runtime.version += 1
        runtime.deadline = 0.0
        self._push(0.0, monitor.id, runtime.version)
        for name in runtime.names:
            self._by_name.setdefault(name, {})[monitor.id] = runtime
        if runtime.uses_fix:
            self._by_fix[monitor.id] = runtime

    def remove_monitor(self, monitor_id: str, *, forget: bool = True) -> None:
        runtime = self._runtimes.pop(monitor_id, None)
        if runtime is not None:
            runtime.version += 1
            for name in runtime.names:
                self._by_name.get(name, {}).pop(monitor_id, None)
            self._by_fix.pop(monitor_id, None)
        if forget:
            self.fired_store.delete(monitor_id)

    def monitors(self) -> list[Monitor]:
        return [r.monitor for r in self._runtimes.values()]

    def wanted_names(self) -> set[str]:
        """Every name the monitors read (triggers, in-use, extensions), for ``Decoder.use``."""
        names: set[str] = set()
        catalog_names = self.catalog.names()
        for runtime in self._runtimes.values():
            names |= runtime.names
            for kind in runtime.monitor.extended:
                names |= wanted_for(kind, catalog_names)
        return {n for n in names if self.catalog.describe(n) is not None and not self._is_gps(n)}

    def _is_gps(self, name: str) -> bool:
        info = self.catalog.describe(name)
        return info is not None and info.source == "gps"

    # -- inputs --------------------------------------------------------------------------------

    def on_change(self, names: Iterable[str], state: VehicleState, now: float) -> list[Event]:
        changed = set(names)
        due: dict[str, _Runtime] = {}
        for name in changed:
            dependents = self._by_name.get(name)
            if dependents:
                due.update(dependents)
                self._watch(name, state)
        return self._run(due, state, now, changed)

    def on_fix(self, state: VehicleState, now: float) -> list[Event]:
        return self._run(dict(self._by_fix), state, now, set())

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def tick(self, state: VehicleState, now: float) -> list[Event]:
        """Run every deadline due at ``now``."""
        due: dict[str, _Runtime] = {}
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            _, _, key, version = entry
            if version < 0:  # a watched name
                self._check_name(key, state, now, due)
            else:
                due[key] = self._runtimes[key]
        return self._run(due, state, now, set())

    # -- internals -----------------------------------------------------------------------------

    def _live(self, entry: tuple[float, int, str, int]) -> bool:
        when, _, key, version = entry
        if version < 0:
            return self._name_watch.get(key) == when
        runtime = self._runtimes.get(key)
        return runtime is not None and runtime.version == version

    def _push(self, when: float, key: str, version: int) -> None:
        self._tiebreak += 1
        heapq.heappush(self._heap, (when, self._tiebreak, key, version))

    def _watch(self, name: str, state: VehicleState) -> None:
        """Schedule the moment ``name`` would go stale if no frame refreshed it."""
        cell = state.get(name)
        if cell is None or cell.max_age is None:
            return
        when = cell.timestamp + cell.max_age + EPSILON_S
        if self._name_watch.get(name) != when:
            self._name_watch[name] = when
            self._push(when, name, -1)

    def _check_name(
        self, name: str, state: VehicleState, now: float, due: dict[str, _Runtime]
    ) -> None:
        del self._name_watch[name]
        cell = state.get(name)
        if cell is None or cell.max_age is None:
            return
        dependents = self._by_name.get(name) or {}
        if not cell.stale(now):  # refreshed by frames meanwhile: watch the new expiry
            self._watch(name, state)
            if any(r.truth is None for r in dependents.values()):
                due.update(dependents)  # it may have come back after a stale stretch
            return
        due.update(dependents)  # just went stale: unknown now
        when = now + STALE_RECHECK_S
        self._name_watch[name] = when
        self._push(when, name, -1)

    def _run(
        self, due: dict[str, _Runtime], state: VehicleState, now: float, changed: set[str]
    ) -> list[Event]:
        events: list[Event] = []
        ctx = Context(state, now, changed)
        quiet = Context(state, now, frozenset())
        for runtime in sorted(due.values(), key=lambda r: r.order):
            event = self._evaluate(runtime, ctx)
            if event is not None:
                events.append(event)
            if changed and runtime.pulses and not runtime.pulses.isdisjoint(changed):
                event = self._evaluate(runtime, quiet)  # onChange is true once per change
                if event is not None:
                    events.append(event)
        return events

    def _evaluate(self, runtime: _Runtime, ctx: Context) -> Event | None:
        self.counters["evaluations"] += 1
        truths = {name: s.evaluate(ctx) for name, s in runtime.states.items()}
        truth = evaluate(runtime.monitor.expression, truths)
        runtime.truth = truth
        event = None
        refresh_every = runtime.monitor.subscribe.refresh_event
        if truth is True and not runtime.fired:
            event = self._fire(runtime, ctx, refresh=False)
        elif truth is True and refresh_every and runtime.last_event is not None:
            if ctx.now >= runtime.last_event + refresh_every:
                event = self._fire(runtime, ctx, refresh=True)
        elif truth is False and runtime.fired:
            runtime.fired = False
            self.fired_store.save(runtime.monitor.id, FiredState(False, runtime.last_event))
        self._reschedule(runtime)
        return event

    def _reschedule(self, runtime: _Runtime) -> None:
        deadlines = [d for d in (s.deadline() for s in runtime.states.values()) if d is not None]
        refresh_every = runtime.monitor.subscribe.refresh_event
        if (
            runtime.truth is True
            and runtime.fired
            and refresh_every
            and runtime.last_event is not None
        ):
            deadlines.append(runtime.last_event + refresh_every)
        when = min(deadlines) if deadlines else None
        if when == runtime.deadline:
            return
        runtime.version += 1
        runtime.deadline = when
        if when is not None:
            self._push(when, runtime.monitor.id, runtime.version)

    def _fire(self, runtime: _Runtime, ctx: Context, *, refresh: bool) -> Event:
        monitor = runtime.monitor
        runtime.fired = True
        runtime.last_event = ctx.now
        self.fired_store.save(monitor.id, FiredState(True, ctx.now))
        self.counters["reminders" if refresh else "events"] += 1
        values: list[EventValue] = []
        for trigger in monitor.triggers:
            if isinstance(trigger, DataTrigger):
                entry = runtime.states[trigger.name].value(ctx)
                if entry is not None:
                    values.append(entry)
        extensions: list[Extension] = []
        for kind in monitor.extended:
            ext = snapshot(kind, ctx.state, ctx.now)
            if ext is not None:
                extensions.append(ext)
        log.debug("monitor %s fired (refresh=%s) at %.3f", monitor.id, refresh, ctx.now)
        return Event(
            event_id=self.event_ids(ctx.now),
            seq=self.sequence.next(),
            vin=self.vin,
            fleet_id=self.fleet_id,
            monitor_id=monitor.id,
            event_date=datetime.fromtimestamp(ctx.now, UTC),
            refresh=refresh,
            values=tuple(values),
            extensions=tuple(extensions),
        )
