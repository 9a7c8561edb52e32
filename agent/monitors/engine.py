"""The monitor engine: triggers -> three-valued expression -> events. Pure: ``now`` comes in.

Firing (SPEC §2): when a monitor's expression goes from not-true to *true*, one event with
``refresh=false``; while it stays true, a reminder (``refresh=true``) once ``refreshEvent``
seconds have passed since the last event; it re-arms only when the expression is *false*.
Unknown (missing or stale data, a fix failing the quality gate) neither fires nor re-arms.
The fired flag and the last event time go through a ``FiredStore`` (saved before the events
are returned), so a restart inside a zone sends no duplicate. A paused monitor is not evaluated.

Work is proportional to what changes: ``on_change`` re-evaluates only monitors that read a
changed name, ``on_fix`` only those that read the position; time windows, dwell, minimum
durations, rate windows and reminders run from a heap of deadlines (``tick``).

Time is exact to the microsecond (issue 19): the heap holds integer microseconds
(``agent.instants``) and ``tick`` runs every deadline whose microsecond has come, so a deadline
computed as ``since + minimum`` is due at ``since + minimum``.

Staleness is exact to its limit without watching the clock (issue 19). Going stale alone never
fires (unknown only takes truth away), so it needs no deadline; what matters is that no decision
uses a stale answer and that a stale stretch resets what it must:
- a decision re-evaluates every trigger of the monitor (``_run``, or ``_refresh_others`` after a
  change), so an answer cached before the data went stale is never re-used;
- the frame that brings a stale signal back is a change (``VehicleState.update``) that reaches
  every reader of the name and first clears their memory (hysteresis, minimum duration): the
  stretch was unknown, whether or not anything looked at it meanwhile.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from agent.instants import SLACK_S, US_PER_S, from_us, to_us
from agent.model import Event
from agent.monitors.extensions import event_extensions, event_values, wanted_for
from agent.monitors.index import Entry, NameIndex
from agent.monitors.kinds import StateContext, state_for
from agent.monitors.memory import (
    FiredState,
    FiredStore,
    MemoryFiredStore,
    MemorySequence,
    SeededIds,
    Sequence,
)
from agent.monitors.model import Catalog, Monitor
from agent.monitors.runtime import MonitorRuntime, by_order
from agent.monitors.signals import GpsCatalog, resolve_in_use, with_gps
from agent.monitors.triggers import (
    Context,
    TriggerState,
)
from agent.state import VehicleState
from agent.wire import uuid7

log = logging.getLogger(__name__)

__all__ = [
    "Engine",
    "FiredState",
    "FiredStore",
    "MemoryFiredStore",
    "MemorySequence",
    "SeededIds",
    "Sequence",
]


def _random_ids(now: float) -> str:
    return uuid7(int(now * 1000))


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
        self._runtimes: dict[str, MonitorRuntime] = {}
        self._by_name: dict[str, dict[str, MonitorRuntime]] = {}
        self._by_fix: dict[str, MonitorRuntime] = {}
        # (when in microseconds, tiebreak, monitor id, version)
        self._heap: list[tuple[int, int, str, int]] = []
        self._tiebreak = 0
        self._order = 0
        self._index: dict[str, NameIndex] = {}  # name -> its readers, by critical value
        self._head: float | None = None  # next_deadline's answer while _head_valid
        self._head_valid = False  # cleared by anything that changes the heap or its entries

    # -- monitors ------------------------------------------------------------------------------

    def set_monitor(self, monitor: Monitor) -> None:
        """Add or replace a monitor (already validated against this engine's ``catalog``)."""
        self.remove_monitor(monitor.id, forget=False)
        states: dict[str, TriggerState] = {}
        context = StateContext(self.catalog, self.in_use_name)
        for trigger in monitor.triggers:
            states[trigger.name] = state_for(trigger, context)
        fired = self.fired_store.load(monitor.id) or FiredState(False)
        runtime = MonitorRuntime(monitor, states, fired)
        self._order += 1
        runtime.order = self._order
        self._runtimes[monitor.id] = runtime
        if monitor.paused:
            return
        # evaluated at the next tick, whatever ``now`` is then (time-only monitors need it)
        runtime.version += 1
        runtime.deadline = 0
        self._push(0, monitor.id, runtime.version)
        for name in runtime.names:
            self._by_name.setdefault(name, {})[monitor.id] = runtime
            index = self._index.get(name)
            if index is None:
                info = self.catalog.describe(name)
                index = self._index[name] = NameIndex(info.kind if info else None)
            for trigger_name, state in runtime.readers[name]:
                index.add((runtime, trigger_name, state))
        if runtime.uses_fix:
            self._by_fix[monitor.id] = runtime

    def remove_monitor(self, monitor_id: str, *, forget: bool = True) -> None:
        runtime = self._runtimes.pop(monitor_id, None)
        self._head_valid = False
        if runtime is not None:
            runtime.version += 1
            for name in runtime.names:
                self._by_name.get(name, {}).pop(monitor_id, None)
                if name in self._index:
                    self._index[name].remove(runtime)
            self._by_fix.pop(monitor_id, None)
        if forget:
            self.fired_store.delete(monitor_id)

    def runtime(self, monitor_id: str) -> MonitorRuntime | None:
        """A monitor's live view (``truth``, ``truths``, ``fired``, ``last_event``)."""
        return self._runtimes.get(monitor_id)

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
        """New values: look only at the triggers a change can affect (``NameIndex``), then
        decide the monitors whose trigger values moved. Kept lean: it runs for every frame that
        changes a value."""
        index_of, cell_of = self._index.get, state.get
        work: list[list[Entry]] | None = None
        for name in names:
            index = index_of(name)
            if index is None:
                continue
            gap = index.gap
            if gap is not None and index.state is state:
                known = index.cell
                try:
                    if (
                        gap[0] < known.value < gap[1]  # type: ignore[operator,union-attr]
                        and known.resumed_at != known.timestamp  # type: ignore[union-attr]
                    ):
                        continue  # between the same two critical values: nothing can move
                except TypeError:  # not a number after all: the full look below copes
                    pass
            cell = cell_of(name)
            if cell is None or (
                cell.max_age is not None
                and now - cell.timestamp > cell.max_age - SLACK_S  # cheap test first
                and cell.stale(now)
            ):
                index.forget()
                entries = index.entries
            elif cell.resumed_at == cell.timestamp:  # first value, or back after a stale stretch
                index.forget()
                for _, _, reader in index.entries:
                    reader.resume()
                entries = index.affected(cell.value)
                index.cell, index.state = cell, state
            else:
                entries = index.affected(cell.value)
                index.cell, index.state = cell, state  # the cell stays: the shortcut reads it
            if entries:
                work = [entries] if work is None else [*work, entries]
        if work is None:
            return []
        return self._apply(work, set(names), state, now)

    def _apply(
        self, work: list[list[Entry]], changed: set[str], state: VehicleState, now: float
    ) -> list[Event]:
        now_us = to_us(now)
        now = now_us / US_PER_S  # the float of that microsecond: triggers see one instant
        ctx = Context(state, now, changed, now_us)
        touched: dict[MonitorRuntime, bool] = {}
        seen: set[int] = set()
        for entries in work:
            for runtime, trigger_name, trigger_state in entries:
                value = trigger_state.evaluate(ctx)
                seen.add(id(trigger_state))
                moved = value is not runtime.truths[trigger_name]
                if moved:
                    runtime.truths[trigger_name] = value
                touched[runtime] = touched.get(runtime, False) or moved
        events: list[Event] = []
        quiet = Context(state, now, frozenset(), now_us)
        for runtime in sorted(touched, key=by_order) if len(touched) > 1 else touched:
            self.counters["evaluations"] += 1
            if touched[runtime]:
                self._refresh_others(runtime, ctx, seen)
                self._decide(runtime, ctx, events)
            else:
                self._reschedule(runtime)
            if runtime.pulses and not runtime.pulses.isdisjoint(changed):
                self._unpulse(runtime, quiet, events)
        return events

    @staticmethod
    def _refresh_others(runtime: MonitorRuntime, ctx: Context, seen: set[int]) -> None:
        """Before a decision, the triggers this change did not reach are evaluated again: their
        cached answers may rest on data that has gone stale since (issue 19). Only monitors
        whose answer moved get here, so the common frame costs nothing more."""
        truths = runtime.truths
        for trigger_name, trigger_state in runtime.states.items():
            if id(trigger_state) not in seen:
                truths[trigger_name] = trigger_state.evaluate(ctx)

    def _unpulse(self, runtime: MonitorRuntime, quiet: Context, events: list[Event]) -> None:
        """onChange is true once per change: back to false right after the change."""
        moved = False
        for name in runtime.pulses:
            for trigger_name, state in runtime.readers.get(name, ()):
                value = state.evaluate(quiet)
                if value is not runtime.truths[trigger_name]:
                    runtime.truths[trigger_name] = value
                    moved = True
        if moved:
            self._decide(runtime, quiet, events)

    def on_fix(self, state: VehicleState, now: float) -> list[Event]:
        return self._run(dict(self._by_fix), state, now)

    def next_deadline(self) -> float | None:
        """The earliest time ``tick`` has work (cached: asked before every input). It is the
        earliest float of that microsecond, so ``deadline <= now`` in floats means due."""
        if self._head_valid:
            return self._head
        heap = self._heap
        runtimes = self._runtimes
        head = None
        while heap:
            when, _, key, version = heap[0]
            runtime = runtimes.get(key)
            if runtime is not None and runtime.version == version:
                head = when
                break
            heapq.heappop(heap)
        self._head = None if head is None else from_us(head)
        self._head_valid = True
        return self._head

    def tick(self, state: VehicleState, now: float) -> list[Event]:
        """Run every deadline due at ``now``."""
        self._head_valid = False
        due: dict[str, MonitorRuntime] = {}
        heap = self._heap
        now_us = to_us(now)
        now = now_us / US_PER_S
        while heap and heap[0][0] <= now_us:
            entry = heapq.heappop(heap)
            if not self._live(entry):
                continue
            due[entry[2]] = self._runtimes[entry[2]]
        return self._run(due, state, now)

    # -- internals -----------------------------------------------------------------------------

    def _live(self, entry: tuple[int, int, str, int]) -> bool:
        _, _, key, version = entry
        runtime = self._runtimes.get(key)
        return runtime is not None and runtime.version == version

    def _push(self, when: int, key: str, version: int) -> None:
        self._head_valid = False
        self._tiebreak += 1
        heapq.heappush(self._heap, (when, self._tiebreak, key, version))

    def _run(self, due: dict[str, MonitorRuntime], state: VehicleState, now: float) -> list[Event]:
        """Evaluate every trigger of the ``due`` monitors (deadlines, fixes, staleness)."""
        if not due:
            return []
        events: list[Event] = []
        now_us = to_us(now)
        ctx = Context(state, now_us / US_PER_S, frozenset(), now_us)
        for runtime in sorted(due.values(), key=by_order) if len(due) > 1 else due.values():
            self.counters["evaluations"] += 1
            truths = runtime.truths
            for trigger_name, trigger_state in runtime.states.items():
                truths[trigger_name] = trigger_state.evaluate(ctx)
            self._decide(runtime, ctx, events)
        return events

    def _decide(self, runtime: MonitorRuntime, ctx: Context, events: list[Event]) -> None:
        """The expression from the trigger values: fire, remind or re-arm; then reschedule."""
        truth = runtime.evaluate(runtime.truths)
        runtime.truth = truth
        refresh_every = runtime.monitor.subscribe.refresh_event
        if truth is True and not runtime.fired:
            events.append(self._fire(runtime, ctx, refresh=False))
        elif truth is True and refresh_every and runtime.last_event is not None:
            if ctx.now_us >= to_us(runtime.last_event) + to_us(refresh_every):
                events.append(self._fire(runtime, ctx, refresh=True))
        elif truth is False and runtime.fired:
            runtime.fired = False
            self.fired_store.save(runtime.monitor.id, FiredState(False, runtime.last_event))
        self._reschedule(runtime)

    def _reschedule(self, runtime: MonitorRuntime) -> None:
        deadlines = [d for d in (s.deadline() for s in runtime.timed) if d is not None]
        refresh_every = runtime.monitor.subscribe.refresh_event
        if (
            runtime.truth is True
            and runtime.fired
            and refresh_every
            and runtime.last_event is not None
        ):
            deadlines.append(to_us(runtime.last_event) + to_us(refresh_every))
        when = min(deadlines) if deadlines else None
        if when == runtime.deadline:
            return
        runtime.version += 1
        runtime.deadline = when
        self._head_valid = False
        if when is not None:
            self._push(when, runtime.monitor.id, runtime.version)

    def _fire(self, runtime: MonitorRuntime, ctx: Context, *, refresh: bool) -> Event:
        monitor = runtime.monitor
        runtime.fired = True
        runtime.last_event = ctx.now
        self.fired_store.save(monitor.id, FiredState(True, ctx.now))
        self.counters["reminders" if refresh else "events"] += 1
        return Event(
            event_id=self.event_ids(ctx.now),
            seq=self.sequence.next(),
            vin=self.vin,
            fleet_id=self.fleet_id,
            monitor_id=monitor.id,
            event_date=datetime.fromtimestamp(ctx.now, UTC),
            refresh=refresh,
            values=event_values(monitor, runtime.states, ctx),
            extensions=event_extensions(monitor, ctx),
        )
