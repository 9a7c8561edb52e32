"""One contract for the engine's FiredStore and Sequence, run against every implementation:
the engine's in-memory twins and the SQLite outbox."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.monitors.engine import FiredState, MemoryFiredStore, MemorySequence
from agent.uplink.outbox import Outbox

Factory = Callable[[Path], Any]

STORES: dict[str, Factory] = {
    "memory": lambda _tmp: MemoryFiredStore(),
    "outbox": lambda tmp: Outbox(tmp / "o.sqlite", fired_type=FiredState),
}
SEQUENCES: dict[str, Factory] = {
    "memory": lambda _tmp: MemorySequence(),
    "outbox": lambda tmp: Outbox(tmp / "s.sqlite"),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_fired_store_contract(kind: str, tmp_path: Path) -> None:
    store = STORES[kind](tmp_path)
    assert store.load("m") is None
    store.save("m", FiredState(True, 12.5))
    store.save("n", FiredState(False))
    assert store.load("m") == FiredState(True, 12.5)
    store.save("m", FiredState(False, 20.0))
    assert store.load("m") == FiredState(False, 20.0)
    store.delete("m")
    store.delete("never-saved")
    assert store.load("m") is None
    assert store.load("n") == FiredState(False)


@pytest.mark.parametrize("kind", sorted(SEQUENCES))
def test_sequence_contract(kind: str, tmp_path: Path) -> None:
    sequence = SEQUENCES[kind](tmp_path)
    values = [sequence.next() for _ in range(5)]
    assert values == list(range(values[0], values[0] + 5))
    assert values[0] == 1
