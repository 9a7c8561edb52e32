"""A backend process whose ingest stops between receipt and commit (for test_backend_crash).

    python -m tests.backend.held_backend CONFIG MARKER

The real composition (``backend.app.Backend``, roles ingest + dispatcher) with one part
injected: before its first commit, the ingest worker writes ``MARKER`` and blocks, so the test
can SIGKILL the process in exactly that window. Production code carries no hook of its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from backend.app import Backend
from backend.config import load_config


def _hold(marker: Path) -> Callable[[int], None]:
    def hold(received: int) -> None:
        marker.write_text(f"{received} received\n")
        threading.Event().wait()  # until SIGKILL

    return hold


async def _serve(backend: Backend) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await backend.run(stop)


def main(config: str, marker: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    roles = frozenset({"ingest", "dispatcher"})
    backend = Backend(load_config(Path(config)), roles, before_commit=_hold(Path(marker)))
    asyncio.run(_serve(backend))


if __name__ == "__main__":
    main(*sys.argv[1:3])
