"""One monitor inside the engine: its trigger states, their last values, and its firing memory."""

from __future__ import annotations

from agent.monitors.conditions import DataState
from agent.monitors.expr import Truth, compile_expression
from agent.monitors.memory import FiredState
from agent.monitors.model import Monitor
from agent.monitors.triggers import TriggerState


class MonitorRuntime:
    """One monitor's trigger states and firing memory."""

    def __init__(
        self, monitor: Monitor, states: dict[str, TriggerState], fired: FiredState
    ) -> None:
        self.monitor = monitor
        self.states = states
        self.fired = fired.fired
        self.last_event = fired.last_event
        self.truth: Truth = None
        self.truths: dict[str, Truth] = dict.fromkeys(states)
        self.readers: dict[str, list[tuple[str, TriggerState]]] = {}
        for trigger_name, state in states.items():
            for name in state.names:
                self.readers.setdefault(name, []).append((trigger_name, state))
        self.names: frozenset[str] = frozenset(self.readers)
        self.uses_fix = any(s.uses_fix for s in states.values())
        self.pulses = frozenset(
            s.trigger.data
            for s in states.values()
            if isinstance(s, DataState) and s.trigger.op == "onChange"
        )
        self.evaluate = compile_expression(monitor.expression)
        self.timed = [s for s in states.values() if s.has_deadlines]
        self.order = 0  # registration order: events of one input come out in this order
        self.version = 0  # bumps when its deadline is rescheduled (stale heap entries)
        self.deadline: int | None = None  # microseconds


def by_order(runtime: MonitorRuntime) -> int:
    """Registration order: the events of one input come out in this order."""
    return runtime.order
