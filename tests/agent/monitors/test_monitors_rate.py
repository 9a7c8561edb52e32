"""risesBy/fallsBy: the monotonic window against a brute-force scan of the held values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.monitors.conditions import RateWindow

steps = st.lists(
    st.tuples(st.integers(0, 30), st.integers(-5, 5)), min_size=1, max_size=40
)  # (seconds since the previous change, new value)


@settings(max_examples=300, deadline=None)
@given(steps, st.integers(1, 60), st.booleans(), st.integers(0, 40))
def test_extreme_is_the_lowest_or_highest_value_held_in_the_window(
    changes: list[tuple[int, int]], within: int, lowest: bool, wait: int
) -> None:
    window = RateWindow(float(within), lowest)  # times in microseconds
    us = 1_000_000
    held: list[tuple[float, float]] = []  # (start, value) of each change
    t = clock = 1000.0
    for gap, value in changes:
        t = max(t + gap, clock)  # changes arrive in time order, after any earlier look
        window.add(round(t) * us, float(value))
        if not held or held[-1][1] != value:
            held.append((t, float(value)))
        now = clock = t + (wait if (gap + value) % 3 == 0 else 0)
        ends = [start for start, _ in held[1:]] + [None]
        in_window = [
            v for (s, v), end in zip(held, ends, strict=True) if end is None or end > now - within
        ]
        expected = min(in_window) if lowest else max(in_window)
        extreme, when = window.extreme(round(now) * us)
        assert extreme == expected
        assert when is None or when > now * us  # the next change by itself is never in the past
