"""GPS test support: real pseudo-terminals, a fix collector, waiting without sleeping blindly."""

from __future__ import annotations

import contextlib
import os
import queue
import time
import tty
from collections.abc import Callable
from pathlib import Path

from agent.model import Fix

CAPTURES = Path(__file__).resolve().parents[2] / "data" / "nmea"


class Pty:
    """A pseudo-terminal pair; the test writes the receiver's bytes into the master."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo/line editing before pyserial configures the port
        self.path = os.ttyname(self.slave)
        self.closed = False

    def write(self, data: bytes, chunk: int = 512) -> None:
        for start in range(0, len(data), chunk):
            view = memoryview(data)[start : start + chunk]
            while view:
                view = view[os.write(self.master, view) :]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            for fd in (self.master, self.slave):
                with contextlib.suppress(OSError):
                    os.close(fd)


class Collector:
    """on_fix target: a queue the test can wait on."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Fix] = queue.Queue()

    def __call__(self, fix: Fix) -> None:
        self.queue.put(fix)

    def take(self, count: int, timeout: float = 10.0) -> list[Fix]:
        deadline = time.monotonic() + timeout
        fixes = []
        while len(fixes) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(fixes)} fixes of {count}: {fixes}")
            with contextlib.suppress(queue.Empty):
                fixes.append(self.queue.get(timeout=left))
        return fixes

    def empty(self) -> bool:
        return self.queue.empty()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)
