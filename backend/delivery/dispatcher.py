"""The dispatcher: leases due deliveries from the store, sends them, records every attempt.

Concurrency is per endpoint (``scheme://host:port``): at most ``per_endpoint`` requests in
flight to one endpoint (an asyncio semaphore per endpoint), and at most ``prefetch`` times that
leased; an endpoint with that many leased is left out of the next claim, so a slow or dead
endpoint only ever occupies its own slots. ``backend.delivery.endpoints`` adds an optional rate
limit per endpoint and a circuit breaker: an endpoint whose circuit is open is left out of the
claim altogether (its deliveries stay due, unattempted, and count no attempt), and gets one
probe at a time once its cool-down is over (docs/delivery.md). Results are written in groups,
before each claim, so the next claim sees every retry state (a monitor in retry holds its later
deliveries back, reference §4).

The clock is injected (``clock``): tests step it with ``step()``. Signature timestamps use
``wall`` (real time), since receivers check them against their own clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

from backend.delivery.endpoints import (
    BreakerPolicy,
    EndpointLimit,
    Endpoints,
    Health,
    Lease,
    health,
)
from backend.delivery.retry import Schedule, next_attempt_at, parse_retry_after
from backend.delivery.routing import webhook_body
from backend.delivery.signing import signature_headers
from backend.delivery.webhooks import Answer, WebhookRequest, WebhookSender
from backend.errors import DeliveryError
from backend.metrics import Metrics
from backend.store.records import Attempt, AttemptResult, ClaimedDelivery, Store

log = logging.getLogger(__name__)


def judge(
    claim: ClaimedDelivery,
    outcome: Answer | DeliveryError,
    *,
    started: float,
    now: float,
    max_age: float,
    none_delay: float,
) -> AttemptResult:
    """What one attempt's answer means for the delivery. Pure."""
    number = claim.tries + 1
    status = outcome.status
    duration = max(0.0, now - started)
    if isinstance(outcome, Answer) and 200 <= outcome.status < 300:
        attempt = Attempt(claim.delivery_id, number, started, duration, "delivered", status)
        return AttemptResult(claim.delivery_id, attempt, claim.monitor_id, "delivered")
    error = str(outcome) if isinstance(outcome, DeliveryError) else f"HTTP {status}"
    if status == 410:
        attempt = Attempt(claim.delivery_id, number, started, duration, "gone", status, error)
        reason = "410 Gone: the endpoint asked to stop; the monitor is Failed"
        return AttemptResult(
            claim.delivery_id, attempt, claim.monitor_id, "dead", reason=reason, gone=True
        )
    if isinstance(outcome, DeliveryError) and not outcome.retryable:
        attempt = Attempt(claim.delivery_id, number, started, duration, "refused", status, error)
        return AttemptResult(claim.delivery_id, attempt, claim.monitor_id, "dead", reason=error)
    retry_after = None
    if isinstance(outcome, Answer) and outcome.status in (429, 503):
        retry_after = parse_retry_after(outcome.retry_after, now)
    schedule = Schedule(
        claim.policy, claim.retry_number, claim.retry_delay, max_age=max_age, none_delay=none_delay
    )
    attempt = Attempt(claim.delivery_id, number, started, duration, "failed", status, error)
    nxt = next_attempt_at(schedule, claim.attempts + 1, claim.held_since, now, retry_after)
    if nxt is None:
        reason = f"gave up after {claim.attempts + 1} attempts ({claim.policy}): {error}"
        return AttemptResult(claim.delivery_id, attempt, claim.monitor_id, "dead", reason=reason)
    return AttemptResult(
        claim.delivery_id, attempt, claim.monitor_id, "pending", next_at=nxt, reason=error
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sender: WebhookSender,
        secret_for: Callable[[str], bytes],
        *,
        per_endpoint: int = 8,
        claim_batch: int = 200,
        lease: float = 120.0,
        poll_interval: float = 0.2,
        prefetch: int = 4,
        max_age: float = 3 * 24 * 3600.0,
        none_delay: float = 10.0,
        clock: Callable[[], float] = time.time,
        wall: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        rate: float = 0.0,
        burst: int = 0,  # 0: per_endpoint
        breaker: BreakerPolicy | None = BreakerPolicy(),  # noqa: B008 (frozen)
        overrides: Mapping[str, EndpointLimit] | None = None,  # by endpoint
    ) -> None:
        self.store = store
        self.sender = sender
        self.secret_for = secret_for
        self.per_endpoint = per_endpoint
        self.claim_batch = claim_batch
        self.lease = lease
        self.poll_interval = poll_interval
        self.max_age = max_age
        self.none_delay = none_delay
        self.clock = clock
        self.wall = wall  # the signature's timestamp is always real time
        self.metrics = metrics or Metrics()
        self.prefetch = prefetch
        self.in_flight: Counter[str] = Counter()  # requests on the wire, per endpoint
        self.claimed: Counter[str] = Counter()  # leased and not finished, per endpoint
        self._gates: dict[str, asyncio.Semaphore] = {}
        default = EndpointLimit(per_endpoint, rate, burst or per_endpoint)
        self.endpoints = Endpoints(breaker, default, overrides, prefetch)
        self._failing: set[str] = set()  # monitors whose last attempt here failed
        self._generation = 0  # one per claim
        self._gone: dict[str, int] = {}  # monitor -> last generation leased before its 410
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: list[AttemptResult] = []
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- one step --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write the results gathered since the last flush, in one transaction."""
        if self._results:
            results, self._results = self._results, []
            self.store.record_results(results, self.clock())

    def start_due(self) -> int:
        """Flush, then lease due deliveries (up to ``prefetch`` x ``per_endpoint`` per endpoint,
        so the store is asked once per several attempts) and start them behind their
        endpoint's gate of ``per_endpoint`` concurrent requests."""
        self.flush()
        now = self.clock()
        self._generation += 1
        claims = self.store.claim_due(
            now,
            self.claim_batch,
            self.endpoints.occupancy(self.claimed, now),
            self.endpoints.claim_cap(),
            now + self.lease,
        )
        for claim in claims:
            self.claimed[claim.endpoint] += 1
            lease = self.endpoints.leased(claim.endpoint, now)
            attempt = self._attempt(claim, self._generation, lease)
            task = asyncio.get_running_loop().create_task(attempt)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claims)

    async def step(self) -> int:
        """Start what is due and wait for those attempts to finish (tests drive this)."""
        started = self.start_due()
        await self.drain()
        return started

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self.flush()

    # -- one attempt -----------------------------------------------------------------------

    def _request(self, claim: ClaimedDelivery, timestamp: int) -> WebhookRequest:
        body = webhook_body(claim.monitor_id, claim.body_attributes, claim.events)
        key = self.secret_for(claim.fleet_id)  # the fleet's, never the callback name's
        signed = signature_headers(key, claim.delivery_id, timestamp, body)
        return WebhookRequest(claim.url, (*claim.headers, *signed.items()), body)

    async def _attempt(self, claim: ClaimedDelivery, generation: int, lease: Lease) -> None:
        gate = self._gates.get(claim.endpoint)
        if gate is None:
            slots = self.endpoints.limit(claim.endpoint).concurrency
            gate = self._gates[claim.endpoint] = asyncio.Semaphore(slots)
        try:
            if lease.wait > 0:  # the endpoint's rate limit
                await asyncio.sleep(lease.wait)
            async with gate:
                if self._unsent(claim, generation, lease):
                    unsent = AttemptResult(claim.delivery_id, None, claim.monitor_id, "pending")
                    self._results.append(unsent)
                    self._circuit(claim.endpoint, unsent, lease)  # a probe's turn is over
                    return
                self.in_flight[claim.endpoint] += 1
                try:
                    result = await self._send(claim)
                finally:
                    self.in_flight[claim.endpoint] -= 1
        finally:
            self.claimed[claim.endpoint] -= 1
        self._results.append(result)
        self._circuit(claim.endpoint, result, lease)
        if result.gone:
            self._gone[claim.monitor_id] = self._generation
        if result.state == "pending":  # in retry: later ones of this monitor wait behind it
            self._failing.add(claim.monitor_id)
        else:
            self._failing.discard(claim.monitor_id)
        if self._wake is not None and (
            result.state != "delivered"
            or self.claimed[claim.endpoint]
            <= self.endpoints.limit(claim.endpoint).lease_cap(self.prefetch) // 2
        ):
            self._wake.set()

    def _unsent(self, claim: ClaimedDelivery, generation: int, lease: Lease) -> bool:
        """Give the lease back unsent: its monitor went into retry (or got 410) while it
        waited, or its endpoint's circuit opened (then it counts no attempt)."""
        if self.endpoints.blocked(claim.endpoint, lease):
            self.metrics.circuit_held.inc()
            return True
        return generation <= self._gone.get(claim.monitor_id, -1) or (
            claim.attempts == 0 and claim.monitor_id in self._failing
        )

    def _circuit(self, endpoint: str, result: AttemptResult, lease: Lease) -> None:
        """Feed the attempt to the endpoint's breaker; a change is logged once and shown."""
        a = result.attempt
        outcome: Health = "unknown" if a is None else health(a.outcome, a.status_code)
        changed = self.endpoints.finished(endpoint, outcome, self.clock(), lease)
        if changed is None:
            return
        breaker = self.endpoints.breakers[endpoint]
        if changed == "open" and not lease.probe:
            log.warning(
                "endpoint %s: circuit open after %d failed attempts in a row;"
                " one probe every %.0f s or more until it answers",
                endpoint,
                breaker.failed_in_row,
                breaker.cooldown,
            )
        elif changed == "closed":
            log.info("endpoint %s: circuit closed, it answers again", endpoint)
        else:
            log.debug("endpoint %s: probe failed, next in %.0f s", endpoint, breaker.cooldown)
        self.metrics.circuit_changes.labels(state=changed).inc()
        self._show_circuits()

    def _show_circuits(self) -> None:
        self.metrics.set_circuits(
            {e: b.state for e, b in self.endpoints.breakers.items() if b.state != "closed"}
        )

    async def _send(self, claim: ClaimedDelivery) -> AttemptResult:
        started = self.clock()
        try:
            outcome: Answer | DeliveryError = await self.sender.send(
                self._request(claim, int(self.wall()))
            )
        except DeliveryError as exc:
            outcome = exc
        except Exception:  # a bug in a sender must not kill the dispatcher
            log.exception("webhook sender failed on %s", claim.delivery_id)
            outcome = DeliveryError("internal error")  # the details are in the log only
        now = self.clock()
        result = judge(
            claim,
            outcome,
            started=started,
            now=now,
            max_age=self.max_age,
            none_delay=self.none_delay,
        )
        self._count(claim, result, now)
        return result

    def _count(self, claim: ClaimedDelivery, result: AttemptResult, now: float) -> None:
        if result.attempt is not None:
            self.metrics.attempts.labels(outcome=result.attempt.outcome).inc()
            log.info(  # the endpoint (scheme://host:port) only: paths and queries hold secrets
                "delivery %s monitor %s to %s: attempt %d %s status %s in %.0f ms",
                claim.delivery_id,
                claim.monitor_id,
                claim.endpoint,
                result.attempt.number,
                result.attempt.outcome,
                result.attempt.status_code,
                result.attempt.duration * 1000,
            )
        if result.state == "delivered":
            self.metrics.deliveries.labels(outcome="delivered").inc()
            self.metrics.latency.observe(max(0.0, now - claim.received_at))
        elif result.state == "dead":
            self.metrics.deliveries.labels(outcome="dead").inc()
            log.warning("delivery %s dead-lettered: %s", claim.delivery_id, result.reason)

    # -- the loop --------------------------------------------------------------------------

    def _sweep_endpoints(self, now: float) -> None:
        """Deliveries held behind an open circuit past their 3-day cap go to the dead letters
        (no attempt is made later than the cap, reference §4); idle bookkeeping is dropped."""
        unavailable = self.endpoints.unavailable()
        if unavailable:
            expired = self.store.expire_endpoints(now, self.max_age, unavailable)
            if expired:
                self.metrics.deliveries.labels(outcome="dead").inc(expired)
                log.warning("%d deliveries expired behind open circuits", expired)
        self.endpoints.forget_idle(now)
        self._show_circuits()

    def wake(self) -> None:
        """Thread-safe: something new is in the store (ingest committed)."""
        loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        last_sweep = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                if self.clock() - last_sweep >= 5.0:
                    last_sweep = self.clock()
                    self.store.expire(last_sweep, self.max_age)
                    self._sweep_endpoints(last_sweep)
                    self.metrics.set_depth(self.store.depth())
                self.start_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        finally:
            await self.drain()
