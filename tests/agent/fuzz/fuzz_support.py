"""Support of the fuzz tests: the regression inputs kept in ``tests/data/fuzz`` and a memory bound.

Every input a fuzz test once found is kept as a file (one case per line, or one case per file)
and replayed by the same assertion as the generated ones, so a fixed crash stays fixed.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings

from tests.conftest import DATA

FUZZ = DATA / "fuzz"

# Bounded in time: a fixed number of examples, no per-example deadline (the machine is shared).
# ``EDGEMON_FUZZ_EXAMPLES=20000 pytest tests/agent/fuzz`` runs a longer campaign by hand.
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("EDGEMON_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def lines_of(name: str) -> list[bytes]:
    """The cases of a one-case-per-line corpus (``\\n`` separated, escapes as Python bytes)."""
    text = (FUZZ / name).read_text(encoding="ascii")
    return [
        eval_bytes(line) for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]


def eval_bytes(line: str) -> bytes:
    r"""A line written as the body of a Python bytes literal (``\xff``, ``\r\n``...)."""
    return line.encode("ascii").decode("unicode_escape").encode("latin-1")


def files_in(folder: str) -> list[Path]:
    return sorted((FUZZ / folder).iterdir())


@contextmanager
def peak_memory() -> Iterator[Callable[[], int]]:
    """The peak of Python allocations (bytes) inside the block."""
    tracemalloc.start()
    peak = [0]
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
