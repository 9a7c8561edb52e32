"""Loaded by `make test-clock-ahead` only (through PYTHONPATH), in every Python process of the run.

That run moves the wall clock ahead with libfaketime and keeps the monotonic clocks real
(``FAKETIME_DONT_FAKE_MONOTONIC=1``, so timed waits keep their meaning). libfaketime 0.9.10 then
turns the absolute ``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` that ``time.sleep`` uses
into EINVAL; a timed wait on an event sleeps the same time without that call.
"""

import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
