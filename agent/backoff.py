"""The one backoff of the agent: how long to wait before retry ``attempt`` (issue 13).

Every retry loop uses it: the MQTT reconnect and the pump's hold when nobody subscribes
(``agent.uplink.mqtt``), reopening a serial GPS receiver or a gpsd connection
(``agent.gps.source``, ``agent.gps.gpsd_source``) and a CAN bus (``agent.can.source``).

Attempt ``n`` (0-based) has the ceiling ``d = min(cap, first x 2^n)`` and waits
``d/2 + jitter x d/2``: "equal jitter", so a retry never comes sooner than half the step (no
spinning) and fleets of vehicles that lost the broker together do not come back in lockstep.
``jitter`` is a number in [0, 1] the caller draws (``rng.random()``); ``1.0`` gives the ceiling
itself, for a loop that has no one to spread from (one local CAN bus). Each loop counts its own
attempts and resets them when the link proves it works.

``Backoff`` is pure: no clock, no randomness of its own. ``Retries`` is the small counter each
loop keeps (failures in a row, and where its jitter comes from).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_DOUBLINGS = 64  # 2^64 x any positive first step is past every cap: no float overflow


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float  # seconds: the ceiling of attempt 0
    cap: float  # seconds: no ceiling above it

    def __post_init__(self) -> None:
        if not (self.first > 0 and self.cap > 0):  # a cap below first simply wins
            raise ValueError(f"backoff needs positive steps (got {self.first}, {self.cap})")

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.first * 2.0 ** min(max(attempt, 0), MAX_DOUBLINGS))

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds before retry ``attempt`` (0-based); ``jitter`` in [0, 1] (clamped)."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + min(max(jitter, 0.0), 1.0) * ceiling / 2


class Retries:
    """A retry loop's failures in a row, turned into delays by a ``Backoff``.

    ``rng=None`` draws no jitter (each delay is the ceiling): for a loop with no one to spread
    from. ``reset`` when the link proves it works (data received), not when it merely opens.
    """

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        jitter = 1.0 if self._rng is None else self._rng.random()
        delay = self.backoff.delay(self.failures, jitter)
        self.failures += 1
        return delay

    def peek(self) -> float:
        """The ceiling of the next delay (for a log line before it is drawn)."""
        return self.backoff.ceiling(self.failures)

    def reset(self) -> None:
        self.failures = 0
