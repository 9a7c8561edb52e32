"""Retry schedules of the Stellantis policies, as pure functions of their inputs.

Reference: ``stellantis-monitors.md`` §4 and B2B ``CallbackSubscribe.retryPolicy``.

- ``None``: the first try plus one single retry (the docs' wording, which the issue follows),
  ``none_delay`` seconds later (``retryDelay`` is ignored for None).
- ``Bounded``: the first try plus ``retry_number`` retries, ``retry_delay`` apart.
- ``Always``: a retry every ``retry_delay`` seconds.
- Every policy stops at ``held_since + max_age`` (3 days): no attempt is planned later.
- A server's ``Retry-After`` (429/503) postpones the next attempt to at least ``now + after``.

``held_since`` is the moment the backend *received* the event (for a batch, its oldest event; for
a re-send from the dead letters, the re-send), never the event's own ``eventDate``. The reference
counts the 3 days from the "trigger time" because there the engine and the sender are one server;
here the engine is on the vehicle, which may hold an event in its outbox for days (underground
garage, no roaming, a gateway off over a long weekend) and whose clock may be wrong by days. The
cap is about the customer's endpoint being unavailable, so it counts only time the backend has
held the event. Counted from ``eventDate``, an event uploaded 3 days late got one single attempt,
even under ``Always`` (issue 11). ``eventDate`` stays what the vehicle said, in the body.

Nothing here reads the clock: ``now`` and ``held_since`` are epoch seconds passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_AGE = 3 * 24 * 3600.0
NONE_RETRY_DELAY = 10.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """A retry policy reduced to what the schedule needs."""

    policy: str = "None"  # one of agent.monitors.model.RETRY_POLICIES (the parser checks it)
    retry_number: int = 3
    retry_delay: float = 10.0
    max_age: float = MAX_AGE
    none_delay: float = NONE_RETRY_DELAY

    def max_attempts(self) -> int | None:
        """Total attempts allowed (first try included); None means only the age cap applies."""
        if self.policy == "Bounded":
            return 1 + max(self.retry_number, 0)
        if self.policy == "Always":
            return None
        return 2

    def delay(self) -> float:
        return self.none_delay if self.policy == "None" else max(self.retry_delay, 0.0)


def next_attempt_at(
    schedule: Schedule,
    attempts: int,
    held_since: float,
    now: float,
    retry_after: float | None = None,
) -> float | None:
    """When to try again after ``attempts`` failed attempts, the last one ending at ``now``.

    Returns None when the policy is exhausted or the next try would fall after the age cap.
    """
    limit = schedule.max_attempts()
    if limit is not None and attempts >= limit:
        return None
    candidate = now + schedule.delay()
    if retry_after is not None and retry_after > 0:
        candidate = max(candidate, now + retry_after)
    if candidate > held_since + schedule.max_age:
        return None
    return candidate


def planned_attempts(schedule: Schedule, held_since: float, first_attempt: float) -> list[float]:
    """Every attempt time if every attempt fails at once (the schedule's shape, for docs/tests)."""
    times = [first_attempt]
    while True:
        nxt = next_attempt_at(schedule, len(times), held_since, times[-1])
        if nxt is None:
            return times
        times.append(nxt)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


def expires_at(schedule: Schedule, held_since: float) -> float:
    """The moment after which a stored notification is dropped to the dead-letter list."""
    return held_since + schedule.max_age


def as_datetime(moment: float) -> datetime:
    return datetime.fromtimestamp(moment, tz=UTC)
