"""What one webhook endpoint (``scheme://host:port``) may receive right now: a rate limit and a
circuit breaker, as pure objects of an injected ``now`` (epoch seconds, never read here).

- ``RateLimit``: a token bucket in its GCRA form (one "theoretical arrival time"): ``rate``
  requests per second sustained, ``burst`` at once. ``reserve(now)`` books the next request and
  says how long it must wait; ``ready(now)`` says how many could start without waiting, so the
  dispatcher leases no more than that.
- ``Breaker``: closed -> open after ``failures`` failed attempts in a row; open for a cool-down
  (doubling on every failed probe, up to ``max_cooldown``); then half-open: one probe at a time;
  its success closes the circuit, its failure opens it again. An open circuit leases nothing,
  so a dead endpoint holds no slot, no lease and no worker.
- ``EndpointLimit`` (concurrency, rate, burst) and ``Endpoints``, one dispatcher's book of them
  all: the default limit, the ones configured by name, a bucket and a breaker per endpoint.

What counts as a failure is the endpoint's health, not the customer's choice: no answer at all
(timeout, connection, TLS) and 429/5xx. Any other answer (2xx, 3xx, 4xx, 410) proves the
endpoint answers; a refusal before any connection (network policy, not https) says nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]
CIRCUIT_STATES: tuple[CircuitState, ...] = ("closed", "open", "half_open")
Health = Literal["ok", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # failed attempts in a row that open the circuit
    cooldown: float = 30.0  # seconds open before the first probe
    max_cooldown: float = 600.0  # the cool-down doubles per failed probe, up to this


def health(outcome: str, status: int | None) -> Health:
    """What one attempt says about the endpoint (``outcome`` as in ``Attempt.outcome``)."""
    if outcome == "refused":
        return "unknown"  # refused before any request: the target, not the endpoint's health
    if outcome in ("delivered", "gone"):
        return "ok"
    if status is None or status == 429 or status >= 500:
        return "failed"
    return "ok"  # a 4xx (or 3xx) answer: the endpoint is up, the request is what it refuses


class RateLimit:
    """``rate`` requests per second, ``burst`` at once (GCRA). Pure: the caller passes ``now``."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.interval = 1.0 / rate
        self.burst = burst
        self._tolerance = (burst - 1) * self.interval
        self._tat = -math.inf  # theoretical arrival time of the next request

    def ready(self, now: float) -> int:
        """How many requests could start at ``now`` without waiting."""
        tat = max(self._tat, now)
        room = (now + self._tolerance - tat) / self.interval
        return max(0, min(self.burst, math.floor(room + 1e-9) + 1))

    def reserve(self, now: float) -> float:
        """Book one request; the seconds it must wait before it goes out (0 = at once)."""
        tat = max(self._tat, now)
        wait = max(0.0, tat - self._tolerance - now)
        self._tat = tat + self.interval
        return wait


class Breaker:
    """The circuit of one endpoint. ``allowed(now)`` is how many requests may be in flight
    (None = no limit from the breaker); ``record(health, now)`` feeds each attempt's health
    back and returns the new state when it changed (so the caller logs a change once)."""

    def __init__(self, policy: BreakerPolicy) -> None:
        self.policy = policy
        self.state: CircuitState = "closed"
        self.failed_in_row = 0
        self.cooldown = policy.cooldown
        self.opened_at = 0.0
        self.probing = 0  # probes in flight (at most one)

    def retry_at(self) -> float:
        return self.opened_at + self.cooldown

    def allowed(self, now: float) -> int | None:
        """Requests that may be in flight now: None when closed, 0 while open, 1 when a probe
        is due (the cool-down is over) and none is out."""
        if self.state == "closed":
            return None
        if self.state == "open" and now >= self.retry_at():
            self.state = "half_open"
        if self.state == "half_open":
            return max(0, 1 - self.probing)
        return 0

    def started(self) -> None:
        """A request leaves for this endpoint (a probe, unless the circuit is closed)."""
        if self.state != "closed":
            self.probing += 1

    def record(self, outcome: Health, now: float, *, probe: bool) -> CircuitState | None:
        if probe:
            self.probing = max(0, self.probing - 1)
        if outcome == "unknown":
            return None
        before = self.state
        if outcome == "ok":
            self.failed_in_row = 0
            if self.state != "closed":  # a probe (or a late answer) proves it is back
                self.state = "closed"
                self.cooldown = self.policy.cooldown
        else:
            self.failed_in_row += 1
            if self.state == "closed" and self.failed_in_row >= self.policy.failures:
                self._open(now, self.policy.cooldown)
            elif self.state == "half_open" and probe:
                self._open(now, min(self.cooldown * 2, self.policy.max_cooldown))
        return self.state if self.state != before else None

    def _open(self, now: float, cooldown: float) -> None:
        self.state = "open"
        self.opened_at = now
        self.cooldown = cooldown


@dataclass(frozen=True, slots=True)
class EndpointLimit:
    """What one endpoint may receive: requests in flight, and a rate (0 = none) with its burst."""

    concurrency: int = 8
    rate: float = 0.0
    burst: int = 8

    def lease_cap(self, prefetch: int) -> int:
        """The most deliveries leased for it at once: ``prefetch`` per slot, never more than
        its bucket can let out at once."""
        cap = self.concurrency * prefetch
        return min(cap, self.burst) if self.rate > 0 else cap


@dataclass(frozen=True, slots=True)
class Lease:
    """How one leased delivery may go out: as its endpoint's probe, after ``wait`` seconds."""

    probe: bool = False
    wait: float = 0.0


class Endpoints:
    """The limits, rate buckets and circuits of every endpoint one dispatcher sends to:
    ``default`` for all, ``overrides`` for the endpoints configured by name.

    ``occupancy`` turns them into what the store's claim understands (per endpoint, how much
    of the default cap is taken), so an open circuit or an empty bucket leases nothing at all.
    """

    def __init__(
        self,
        breaker: BreakerPolicy | None,
        default: EndpointLimit = EndpointLimit(),
        overrides: Mapping[str, EndpointLimit] | None = None,
        prefetch: int = 4,
    ) -> None:
        self.policy = breaker
        self.default = default
        self.overrides = dict(overrides or {})
        self.prefetch = prefetch
        self.breakers: dict[str, Breaker] = {}
        self._rates: dict[str, RateLimit] = {}

    def limit(self, endpoint: str) -> EndpointLimit:
        return self.overrides.get(endpoint, self.default)

    def claim_cap(self) -> int:
        """The store's per-endpoint cap: the default's (an unseen endpoint gets it)."""
        return self.default.lease_cap(self.prefetch)

    def occupancy(self, claimed: Mapping[str, int], now: float) -> dict[str, int]:
        """Per endpoint, the part of ``claim_cap()`` that is taken (the store leases the rest):
        by leases not finished, by an open circuit, by the rate limit. An endpoint configured
        above the default shows a negative part: the store gives it the room above the cap."""
        default = self.claim_cap()
        taken: dict[str, int] = {}
        for endpoint in {*claimed, *self.breakers, *self._rates, *self.overrides}:
            room = self.limit(endpoint).lease_cap(self.prefetch) - claimed.get(endpoint, 0)
            breaker = self.breakers.get(endpoint)
            allowed = None if breaker is None else breaker.allowed(now)
            if allowed is not None:
                room = min(room, allowed)
            bucket = self._rates.get(endpoint)
            if bucket is not None:
                room = min(room, bucket.ready(now))
            taken[endpoint] = default - max(0, room)
        return taken

    def leased(self, endpoint: str, now: float) -> Lease:
        """Book one leased delivery: whether it is the probe, and its wait for the rate."""
        breaker = self.breakers.get(endpoint)
        probe = breaker is not None and breaker.state != "closed"
        if probe and breaker is not None:
            breaker.started()
        wait = 0.0
        limit = self.limit(endpoint)
        if limit.rate > 0:
            bucket = self._rates.setdefault(endpoint, RateLimit(limit.rate, limit.burst))
            wait = bucket.reserve(now)
        return Lease(probe, wait)

    def blocked(self, endpoint: str, lease: Lease) -> bool:
        """True when a delivery leased before its endpoint's circuit opened must not go out."""
        breaker = self.breakers.get(endpoint)
        return breaker is not None and breaker.state != "closed" and not lease.probe

    def finished(
        self, endpoint: str, outcome: Health, now: float, lease: Lease
    ) -> CircuitState | None:
        """Feed one attempt's health back; the circuit's new state when it changed."""
        if self.policy is None:
            return None
        breaker = self.breakers.get(endpoint)
        if breaker is None:
            if outcome != "failed":
                return None  # a healthy endpoint needs no breaker kept
            breaker = self.breakers[endpoint] = Breaker(self.policy)
        return breaker.record(outcome, now, probe=lease.probe)

    def unavailable(self) -> list[str]:
        """Endpoints whose circuit is not closed."""
        return sorted(e for e, b in self.breakers.items() if b.state != "closed")

    def forget_idle(self, now: float) -> None:
        """Drop what an endpoint no longer needs (bounded memory): a closed breaker without a
        failure, a full bucket."""
        for endpoint, breaker in list(self.breakers.items()):
            if breaker.state == "closed" and breaker.failed_in_row == 0:
                del self.breakers[endpoint]
        for endpoint, bucket in list(self._rates.items()):
            if bucket.ready(now) >= bucket.burst:
                del self._rates[endpoint]
