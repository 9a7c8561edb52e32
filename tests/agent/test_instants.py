"""Integer-microsecond time (issue 19): exact deadlines and ages on float timestamps."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from agent.instants import from_us, older_than, to_us

# epoch microseconds from 2001 to 2099, and ages up to a day
INSTANTS = st.integers(1_000_000_000_000_000, 4_070_000_000_000_000)
AGES = st.integers(0, 86_400_000_000)


@given(INSTANTS)
def test_from_us_is_the_earliest_float_of_its_microsecond(us: int) -> None:
    seconds = from_us(us)
    assert to_us(seconds) == us
    assert to_us(math.nextafter(seconds, -math.inf)) == us - 1


@given(INSTANTS, AGES)
def test_a_deadline_is_due_at_any_float_of_its_microsecond(since: int, minimum: int) -> None:
    deadline = from_us(since + minimum)  # what ``Engine.next_deadline`` hands out
    now = (since + minimum) / 1_000_000  # the clock's float for that microsecond
    while to_us(now) == since + minimum:
        assert deadline <= now
        now = math.nextafter(now, math.inf)


@given(INSTANTS, AGES, st.integers(-3, 3))
def test_older_than_is_exact_at_the_limit(then: int, limit: int, offset: int) -> None:
    now = then + limit + offset
    assert older_than(now / 1_000_000, then / 1_000_000, limit / 1_000_000) is (offset > 0)


def test_the_issue_case_in_floats_and_in_microseconds() -> None:
    since = 1_781_121_480.0
    assert since + 3.55 - since < 3.55  # the float test that never fired
    assert to_us(since + 3.55) - to_us(since) == 3_550_000
