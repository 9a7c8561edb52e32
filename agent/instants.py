"""Instants as integer microseconds, so that a deadline is due exactly when it is reached.

Times travel as float seconds since the epoch (``agent.model``), but a float sum such as
``since + 3.55`` is not the float the clock shows 3.55 s after ``since`` (issue 19: a minimum
duration of 3.55 s compared as 3.5499999... and never fired). Everything that compares an age
with a limit or a deadline with ``now`` does it on integer microseconds: ``to_us`` is exact for
any float timestamp up to the year 2106 (the float's spacing stays under half a microsecond).
Pure.
"""

from __future__ import annotations

import math

US_PER_S = 1_000_000
SLACK_S = 2e-6  # more than the float error of a difference of two timestamps (microseconds)


def to_us(seconds: float) -> int:
    """A time or a duration in whole microseconds (rounded to the nearest)."""
    return round(seconds * US_PER_S)


def from_us(us: int) -> float:
    """The earliest float second that ``to_us`` maps to ``us``: a caller comparing
    ``deadline <= now`` in floats agrees with ``to_us(deadline) <= to_us(now)``."""
    seconds = us / US_PER_S
    for _ in range(8):  # timestamps have 2-5 floats per microsecond (near 0: many, none needed)
        lower = math.nextafter(seconds, -math.inf)
        if to_us(lower) != us:
            break
        seconds = lower
    return seconds


def older_than(now: float, then: float, limit: float) -> bool:
    """``now - then > limit``, decided on whole microseconds (a float test first: cheap)."""
    return now - then > limit - SLACK_S and to_us(now) - to_us(then) > to_us(limit)
