"""The pipeline step: frames and fixes in, events and deadlines out (issue 13).

    Frame ─> Decoder.feed ─> VehicleState ─> Engine.on_change ─┐
    Fix ──────────────────> VehicleState ─> Engine.on_fix ─────┼─> events
    Sample (OBD-II) ──────> VehicleState ─> Engine.on_change ──┤
    deadlines (windows, dwell, reminders, staleness) ─> tick ──┘

One step for every caller: the daemon (``agent.app``, on the trusted clock, one input at a
time from its inbox), ``replay`` (on the recording's own clock, through ``run_recording``) and
the benchmarks. Before an input is applied, every deadline due by its time runs at its own time
(never before the previous step, never after the input), so a deadline between two inputs fires
exactly when it falls, whoever drives the pipeline.

Pure: no clock, no I/O; the caller says what time it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from agent.can.decode import Decoder
from agent.model import Event, Fix, Frame, Sample
from agent.monitors.engine import Engine
from agent.state import VehicleState


class Pipeline:
    """Decoder, vehicle state and engine, stepped together."""

    def __init__(self, decoder: Decoder, engine: Engine, state: VehicleState | None = None) -> None:
        self.decoder = decoder
        self.engine = engine
        self.state = state if state is not None else VehicleState()
        self._last: float | None = None  # the time of the previous step
        self.frames = 0
        self.fixes = 0
        self.samples = 0

    def next_deadline(self) -> float | None:
        return self.engine.next_deadline()

    def due(self, now: float) -> list[Event]:
        """Run every deadline due by ``now``, each at its own time (never before the previous
        step's time or a deadline already run, never after ``now``)."""
        engine, state = self.engine, self.state
        events: list[Event] = []
        at = self._last if self._last is not None else now
        while (deadline := engine.next_deadline()) is not None and deadline <= now:
            at = min(now, max(deadline, at))
            events += engine.tick(state, at)
        self._last = now
        return events

    def step(self, item: Frame | Fix | Sample, now: float) -> list[Event]:
        """The deadlines due by ``now``, then the input applied at ``now``."""
        deadline = self.engine.next_deadline()
        events = self.due(now) if deadline is not None and deadline <= now else []
        self._last = now
        if isinstance(item, Frame):
            self.frames += 1
            names = self.decoder.feed(item, self.state)
            return events + self.engine.on_change(names, self.state, now) if names else events
        if isinstance(item, Sample):
            self.samples += 1
            if self.state.update(item.name, item.value, item.timestamp, item.max_age):
                return events + self.engine.on_change((item.name,), self.state, now)
            return events
        self.fixes += 1
        self.state.update_fix(item)
        return events + self.engine.on_fix(self.state, now)


# called after each step with (input or None for the final deadlines, state, time, its events)
Observer = Callable[[Frame | Fix | Sample | None, VehicleState, float, list[Event]], None]


def run_recording(
    pipeline: Pipeline, items: Iterable[Frame | Fix | Sample], observe: Observer | None = None
) -> Iterator[Event]:
    """Replay recorded inputs (ordered by time) on their own clock: each input at its
    timestamp, never going back in time; the deadlines due at the last input's time at the end.
    ``observe`` (``replay --trace``/``--plot``) sees the state after every step, and after
    the deadlines due before an input, at their own time (the same deadlines, in the same
    order, as ``step`` runs them)."""
    clock: float | None = None
    for item in items:
        # each deadline seen at its own time, before the input (never before the previous
        # input: the first one's are all due at its time, as in ``step``)
        previous, clock = clock, item.timestamp if clock is None else max(clock, item.timestamp)
        while (
            observe is not None
            and (deadline := pipeline.next_deadline()) is not None
            and deadline <= clock
        ):
            at = clock if previous is None else max(deadline, previous)
            events = pipeline.due(at)
            observe(None, pipeline.state, at, events)
            yield from events
        events = pipeline.step(item, clock)
        if observe is not None:
            observe(item, pipeline.state, clock, events)
        yield from events
    if clock is not None:
        events = pipeline.due(clock)
        if observe is not None:
            observe(None, pipeline.state, clock, events)
        yield from events
