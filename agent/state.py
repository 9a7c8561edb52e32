"""The vehicle state: the latest value of every signal in use, and the latest GPS fix.

Pure: values and timestamps go in, nothing reads a clock. A signal is *stale* once ``now`` is past
its timestamp plus its ``max_age`` (cycle time x factor, set by whoever feeds it), to the
microsecond (``agent.instants``); a stale or missing signal reads as None, which the monitor
engine treats as unknown. A frame that brings a stale signal back counts as a change (from
unknown to a value) even when it carries the value the signal had before.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.instants import SLACK_S, older_than
from agent.model import Fix, Value


@dataclass(slots=True)
class SignalState:
    value: Value
    previous: Value | None
    timestamp: float  # time of the last frame that carried the signal
    changed_at: float  # time the value last changed
    max_age: float | None  # seconds after ``timestamp`` when the value goes stale; None = never
    resumed_at: float  # time of the frame that made it known: the first, or the first after stale

    def stale(self, now: float) -> bool:
        return self.max_age is not None and older_than(now, self.timestamp, self.max_age)


class VehicleState:
    """Latest values by name (data names and ``Message.Signal`` keys alike)."""

    def __init__(self) -> None:
        self._signals: dict[str, SignalState] = {}
        self.fix: Fix | None = None

    def update(
        self, name: str, value: Value, timestamp: float, max_age: float | None = None
    ) -> bool:
        """Record a value; return True when it differs from the previous value (or is the first),
        or when it brings back a signal that was stale (``changed_at`` then stays)."""
        current = self._signals.get(name)
        if current is None:
            self._signals[name] = SignalState(value, None, timestamp, timestamp, max_age, timestamp)
            return True
        old_age = current.max_age
        back = (  # the float test first: the common case costs one subtraction
            old_age is not None
            and timestamp - current.timestamp > old_age - SLACK_S
            and older_than(timestamp, current.timestamp, old_age)
        )
        current.timestamp = timestamp
        current.max_age = max_age
        if back:
            current.resumed_at = timestamp
        if current.value == value and type(current.value) is type(value):
            return back
        current.previous = current.value
        current.value = value
        current.changed_at = timestamp
        return True

    def update_fix(self, fix: Fix) -> None:
        self.fix = fix

    def get(self, name: str) -> SignalState | None:
        return self._signals.get(name)

    def current(self, name: str, now: float) -> Value | None:
        """The value, or None when the signal is missing or stale at ``now``."""
        state = self._signals.get(name)
        if state is None or state.stale(now):
            return None
        return state.value

    def names(self) -> list[str]:
        return list(self._signals)

    def __len__(self) -> int:
        return len(self._signals)
