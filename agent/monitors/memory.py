"""The engine's memory across restarts and its event numbering: protocols and in-memory twins.

``FiredStore`` keeps each monitor's fired flag and last event time (the daemon persists it in
its outbox database, committed with the events); ``Sequence`` hands out per-vehicle sequence
numbers. ``SeededIds`` makes reproducible UUIDv7-shaped event ids for replay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


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
    """Reproducible UUIDv7-shaped event ids: the event time's milliseconds + 74 bits from a
    pseudo-random generator seeded with ``seed``. For replay, where the same recording must give
    the same output (never for anything secret)."""

    def __init__(self, seed: str = "edgemon") -> None:
        self._random = random.Random(seed)

    def __call__(self, now: float) -> str:
        bits = self._random.getrandbits(74)
        value = (int(now * 1000) & ((1 << 48) - 1)) << 80
        value |= 0x7 << 76
        value |= (bits >> 62) << 64  # 12 bits
        value |= 0b10 << 62
        value |= bits & ((1 << 62) - 1)
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
