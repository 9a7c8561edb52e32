"""Per-vehicle event rate: one token bucket per VIN, pure (``now`` is passed in).

A vehicle may send ``burst`` events at once and ``rate`` per second sustained; beyond that its
events are acknowledged, dropped and counted (``rate_limited``), so one rogue or broken gateway
cannot fill the store or starve the others. At most ``max_vehicles`` buckets are kept: when a new
VIN arrives at the limit, the buckets that have refilled completely (indistinguishable from a
new one) are forgotten, then the least recently seen until a quarter of the table is free;
memory stays bounded however many VINs a sender invents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

MAX_VEHICLES = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class VehicleRate:
    def __init__(self, rate: float, burst: int, *, max_vehicles: int = MAX_VEHICLES) -> None:
        if rate <= 0 or burst < 1 or max_vehicles < 1:
            raise ValueError("rate, burst and max_vehicles must be positive")
        self.rate = rate
        self.burst = float(burst)
        self.max_vehicles = max_vehicles
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, vin: str, now: float) -> bool:
        """Take one token from ``vin``'s bucket; False when it is empty (the event is dropped)."""
        bucket = self._buckets.pop(vin, None)  # re-inserted below: the dict's order is recency
        if bucket is None:
            if len(self._buckets) >= self.max_vehicles:
                self._evict(now)
            bucket = _Bucket(self.burst, now)
        self._buckets[vin] = bucket
        elapsed = max(0.0, now - bucket.at)  # a clock stepping back refills nothing
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.at = max(bucket.at, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _evict(self, now: float) -> None:
        """Free at least a quarter of the table (amortised: a scan per quarter of new VINs)."""
        target = max(1, len(self._buckets) // 4)
        full = {
            vin
            for vin, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.at) * self.rate >= self.burst
        }
        oldest = (vin for vin in self._buckets if vin not in full)  # least recently seen first
        doomed = [*full, *(next(oldest) for _ in range(max(0, target - len(full))))]
        for vin in doomed:
            del self._buckets[vin]


class SkipLog:
    """Warnings about refused messages, at most ``burst`` lines per reason and then ``rate`` per
    second: a flood of bad messages is counted in full by the metrics, but it cannot flood the
    log. The next line said for a reason tells how many were held back since the last one."""

    def __init__(self, logger: logging.Logger, *, rate: float = 1.0, burst: int = 20) -> None:
        self.logger = logger
        self._budget = VehicleRate(rate, burst, max_vehicles=1_000)  # keyed by reason
        self._held: dict[str, int] = {}

    def warn(
        self,
        reason: str,
        now: float,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``message % args`` unless over budget; True when it was logged."""
        if not self._budget.allow(reason, now):
            self._held[reason] = self._held.get(reason, 0) + 1
            return False
        held = self._held.pop(reason, 0)
        suffix = f" ({held} more {reason} not logged)" if held else ""
        self.logger.warning(message + "%s", *args, suffix, exc_info=exc_info)
        return True
