"""The per-endpoint rate limit and circuit breaker (backend.delivery.endpoints), pure, with the
clock passed in; and the dispatcher using them, with the in-memory sender and a stepped clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.delivery.dispatcher import Dispatcher
from backend.delivery.endpoints import (
    Breaker,
    BreakerPolicy,
    EndpointLimit,
    Endpoints,
    Lease,
    RateLimit,
    health,
)
from backend.delivery.retry import MAX_AGE
from backend.delivery.signing import secret_key
from backend.delivery.webhooks import Answer, MemorySender, WebhookRequest
from backend.errors import DeliveryError
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import (
    SECRET,
    T0,
    ManualClock,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)

POLICY = BreakerPolicy(failures=3, cooldown=30.0, max_cooldown=100.0)


# -- the rate limit ----------------------------------------------------------------------------


def test_rate_limit_allows_a_burst_then_spaces_requests() -> None:
    bucket = RateLimit(rate=2.0, burst=3)
    assert bucket.ready(T0) == 3
    assert [bucket.reserve(T0) for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    assert bucket.ready(T0) == 0
    assert bucket.ready(T0 + 1.4) == 0  # the fifth goes at T0 + 1.0, the next 0.5 s later
    assert bucket.ready(T0 + 1.5) == 1
    assert bucket.ready(T0 + 2.0) == 2
    assert bucket.ready(T0 + 100) == 3  # never more than the burst


@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 5), min_size=1, max_size=60),
)
def test_rate_limit_never_exceeds_burst_plus_rate_times_span(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Whatever the request pattern, the requests that go out within any span starting at the
    first one are at most ``burst + rate * span``."""
    bucket = RateLimit(rate, burst)
    now, sent = T0, []
    for gap in gaps:
        now += gap
        sent.append(now + bucket.reserve(now))
    first = sent[0]
    for i, at in enumerate(sent):  # in seconds, to a microsecond (floats of epoch times)
        assert at - first >= (i + 1 - burst) / rate - 1e-6


def test_rate_limit_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimit(0.0, 1)
    with pytest.raises(ValueError):
        RateLimit(1.0, 0)


# -- the breaker -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status", "expected"),
    [
        ("delivered", 200, "ok"),
        ("gone", 410, "ok"),
        ("failed", 400, "ok"),  # it answers: the request is refused, not the endpoint down
        ("failed", 429, "failed"),
        ("failed", 503, "failed"),
        ("failed", None, "failed"),  # timeout, connection, TLS
        ("refused", None, "unknown"),  # refused by our network policy: no request made
    ],
)
def test_what_counts_as_a_failure(outcome: str, status: int | None, expected: str) -> None:
    assert health(outcome, status) == expected


def test_breaker_opens_after_failures_in_a_row_then_probes_once_after_the_cooldown() -> None:
    b = Breaker(POLICY)
    assert b.record("failed", T0, probe=False) is None
    assert b.record("ok", T0, probe=False) is None  # a success resets the streak
    assert [b.record("failed", T0 + i, probe=False) for i in range(3)] == [None, None, "open"]
    assert b.allowed(T0 + 2) == 0
    assert b.allowed(T0 + 31) == 0  # 30 s from its opening at T0 + 2
    assert b.allowed(T0 + 32) == 1 and b.state == "half_open"
    b.started()  # the probe leaves
    assert b.allowed(T0 + 33) == 0  # one probe at a time
    assert b.record("failed", T0 + 40, probe=True) == "open"
    assert b.cooldown == 60.0  # doubled
    assert b.allowed(T0 + 99) == 0 and b.allowed(T0 + 100) == 1
    b.started()
    assert b.record("failed", T0 + 100, probe=True) == "open"
    assert b.cooldown == 100.0  # capped at max_cooldown
    assert b.allowed(T0 + 200) == 1
    b.started()
    assert b.record("ok", T0 + 201, probe=True) == "closed"
    assert b.allowed(T0 + 201) is None and b.cooldown == 30.0 and b.failed_in_row == 0


def test_breaker_a_probe_given_back_unsent_frees_the_turn() -> None:
    b = Breaker(POLICY)
    for i in range(3):
        b.record("failed", T0 + i, probe=False)
    assert b.allowed(T0 + 40) == 1
    b.started()
    assert b.record("unknown", T0 + 41, probe=True) is None
    assert b.state == "half_open" and b.allowed(T0 + 41) == 1


def test_endpoints_occupancy_leaves_open_circuits_and_empty_buckets_out() -> None:
    e = Endpoints(POLICY, EndpointLimit(concurrency=8, rate=1.0, burst=2), prefetch=4)
    cap = e.claim_cap()
    assert cap == 2  # an unseen endpoint is leased no more than its burst
    a, b = "https://a:443", "https://b:443"
    for i in range(3):
        e.finished(a, "failed", T0 + i, Lease())
    assert e.unavailable() == [a]
    e.leased(b, T0)
    e.leased(b, T0)
    assert e.occupancy({b: 0}, T0) == {a: cap, b: cap}  # a open, b's bucket empty
    assert e.occupancy({}, T0 + 1) == {a: cap, b: cap - 1}
    probe = e.leased(a, T0 + 40)  # cool-down over: one probe
    assert probe.probe and not e.blocked(a, probe)
    assert e.blocked(a, Lease())  # leased before the circuit opened: held back
    assert e.occupancy({a: 1}, T0 + 40)[a] == cap
    assert e.finished(a, "ok", T0 + 41, probe) == "closed"
    e.forget_idle(T0 + 100)
    assert e.breakers == {} and e.occupancy({}, T0 + 100) == {}


def test_an_endpoint_configured_by_name_gets_its_own_limits() -> None:
    big, small = "https://big:443", "https://small:443"
    overrides = {big: EndpointLimit(concurrency=20), small: EndpointLimit(1, rate=5.0, burst=1)}
    e = Endpoints(None, EndpointLimit(concurrency=8), overrides, prefetch=4)
    assert e.claim_cap() == 32
    # big may have 80 leased: 48 above the default cap (a negative part taken)
    assert e.occupancy({big: 10}, T0) == {big: 32 - 70, small: 32 - 1}
    assert e.leased(small, T0).wait == 0.0
    assert e.occupancy({small: 1}, T0)[small] == 32  # its one slot and its bucket are used
    assert e.leased(small, T0).wait == pytest.approx(0.2)  # 5/s
    assert e.limit("https://other:443") == EndpointLimit(concurrency=8)


# -- the dispatcher with them ------------------------------------------------------------------


def _dispatcher(store: SqliteStore, clock: ManualClock, script: object, **kw: object) -> Dispatcher:
    sender = MemorySender(script)  # type: ignore[arg-type]
    return Dispatcher(store, sender, lambda _f: secret_key(SECRET), clock=clock, **kw)  # type: ignore[arg-type]


def test_open_circuit_holds_deliveries_without_counting_attempts(store: SqliteStore) -> None:
    """An endpoint down: after ``failures`` attempts the circuit opens; then the deliveries wait
    unattempted (their attempts count stays), and one probe goes out per cool-down."""
    down = {"on": True}

    def script(request: WebhookRequest) -> Answer | DeliveryError:
        failing = down["on"] and "down" in request.url
        return DeliveryError("connection failed") if failing else Answer(200)

    mid = add_monitor(store, monitor_definition("https://down.example", policy="Always",
                                                retry_delay=5))  # fmt: skip
    other = add_monitor(store, monitor_definition("https://up.example"))
    clock = ManualClock()
    d = _dispatcher(store, clock, script, breaker=POLICY, per_endpoint=1, prefetch=1)
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(4)], clock.now)

    async def run() -> None:
        for _ in range(60):  # 5 minutes in 5 s steps
            await d.step()
            clock.advance(5)
        down["on"] = False
        for _ in range(20):
            await d.step()
            clock.advance(5)

    ingest_events(store, [make_event(other, at=T0)], clock.now)
    asyncio.run(run())
    sent = [r.url for r in d.sender.requests]  # type: ignore[attr-defined]
    to_down = [u for u in sent if "down" in u]
    # 3 failures open it at T0+10; failed probes at +40, +100, +200 (cool-downs 30, 60, then
    # 100 capped); the endpoint is back at T0+300, whose probe closes it, and the rest go.
    views, _ = store.deliveries(mid, None, 0, 10)
    assert all(v.state == "delivered" for v in views)
    failed = sum(1 for v in views for a in v.history if a.outcome == "failed")
    assert failed == 3 + 3  # the three that opened it, three failed probes: nothing else
    assert len(to_down) == failed + 4
    assert store.deliveries(other, "delivered", 0, 10)[1] == 1


def test_deliveries_behind_an_open_circuit_expire_at_the_three_day_cap(
    store: SqliteStore,
) -> None:
    mid = add_monitor(store, monitor_definition("https://down.example", policy="Always",
                                                retry_delay=60))  # fmt: skip
    clock = ManualClock()
    d = _dispatcher(store, clock, lambda _r: Answer(503), breaker=POLICY)
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(5)], clock.now)

    async def three_failures() -> None:  # the first one in retry, the others held behind it
        for _ in range(3):
            await d.step()
            clock.advance(60)

    asyncio.run(three_failures())
    assert d.endpoints.unavailable() == ["https://down.example:443"]
    clock.now = T0 + MAX_AGE - 1
    d._sweep_endpoints(clock.now)
    assert store.deliveries(mid, "dead", 0, 10)[1] == 0
    clock.now = T0 + MAX_AGE + 1
    d._sweep_endpoints(clock.now)
    dead, total = store.deliveries(mid, "dead", 0, 10)
    assert total == 5 and all("did not answer" in v.reason for v in dead)
    # no attempt was spent on them meanwhile: only the three that opened the circuit
    assert sorted(v.attempts for v in dead) == [0, 0, 0, 0, 3]


def test_the_rate_limit_leases_no_more_than_the_bucket_holds(store: SqliteStore) -> None:
    mid = add_monitor(store, monitor_definition("https://slow.example"))
    others = [add_monitor(store, monitor_definition("https://slow.example")) for _ in range(4)]
    clock = ManualClock()
    d = _dispatcher(store, clock, lambda _r: Answer(200), rate=1.0, burst=2)
    ingest_events(store, [make_event(m, at=T0) for m in [mid, *others]], clock.now)

    async def run() -> list[int]:
        sent = [await d.step(), await d.step()]  # a burst of two, then nothing at the same time
        clock.advance(1.0)
        sent.append(await d.step())  # one more a second later
        clock.advance(10.0)
        sent.append(await d.step())  # never more than the burst at once
        return sent

    assert asyncio.run(run()) == [2, 0, 1, 2]
    assert len(d.sender.requests) == 5  # type: ignore[attr-defined]


def test_deliveries_leased_before_the_circuit_opened_go_back_unsent(store: SqliteStore) -> None:
    monitors = [add_monitor(store, monitor_definition("https://down.example")) for _ in range(4)]
    clock = ManualClock()
    policy = BreakerPolicy(failures=1, cooldown=30.0)
    d = _dispatcher(store, clock, lambda _r: Answer(503), breaker=policy, per_endpoint=1)
    ingest_events(store, [make_event(m, at=T0) for m in monitors], clock.now)
    assert asyncio.run(d.step()) == 4  # four leased, one request at a time
    assert len(d.sender.requests) == 1  # type: ignore[attr-defined]
    tried = [store.deliveries(m, None, 0, 1)[0][0] for m in monitors]
    assert sorted(v.attempts for v in tried) == [0, 0, 0, 1]  # none spent on the held three
    assert all(v.state == "pending" for v in tried)
    text = d.metrics.render().decode()
    assert "edgemon_deliveries_held_by_circuit_total 3.0" in text
    assert 'edgemon_endpoint_circuit{endpoint="https://down.example:443",state="open"} 1.0' in text


def test_on_a_shared_host_a_broken_customer_delays_but_never_starves_another(
    store: SqliteStore,
) -> None:
    """Probes take the oldest due delivery; a failed probe's delivery is due again only after
    its retry delay, so the next probe carries another customer's delivery, whose success
    closes the circuit."""
    broken = add_monitor(store, monitor_definition("https://hooks.example/a", policy="Always",
                                                   retry_delay=5))  # fmt: skip
    healthy = add_monitor(store, monitor_definition("https://hooks.example/b"))
    clock = ManualClock()

    def script(request: WebhookRequest) -> Answer:
        return Answer(500 if "/a" in request.url else 200)

    d = _dispatcher(store, clock, script, breaker=POLICY, per_endpoint=1, prefetch=1)
    ingest_events(store, [make_event(broken, at=T0 + i) for i in range(3)], clock.now)

    async def run() -> None:
        for _ in range(6):  # the broken one alone: the circuit opens
            await d.step()
            clock.advance(5)
        assert d.endpoints.unavailable() == ["https://hooks.example:443"]
        ingest_events(store, [make_event(healthy, at=clock.now + i) for i in range(5)], clock.now)
        for _ in range(120):  # ten minutes
            await d.step()
            clock.advance(5)

    asyncio.run(run())
    assert store.deliveries(healthy, "delivered", 0, 10)[1] == 5
    assert store.deliveries(broken, "delivered", 0, 10)[1] == 0


class _CountingSender:
    """Answers 200 after yielding once, and records the most requests in flight per host."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.most: dict[str, int] = {}

    async def send(self, request: WebhookRequest) -> Answer:
        host = request.url.split("/")[2]
        self.in_flight[host] = self.in_flight.get(host, 0) + 1
        self.most[host] = max(self.most.get(host, 0), self.in_flight[host])
        await asyncio.sleep(0)
        self.in_flight[host] -= 1
        return Answer(200)

    async def close(self) -> None:
        return None


def test_an_endpoint_configured_above_the_default_gets_more_slots(store: SqliteStore) -> None:
    big = add_monitor(store, monitor_definition("https://big.example/in"))
    other = add_monitor(store, monitor_definition("https://other.example/in"))
    clock = ManualClock()
    sender = _CountingSender()
    overrides = {"https://big.example:443": EndpointLimit(concurrency=3, burst=3)}
    d = Dispatcher(store, sender, lambda _f: secret_key(SECRET), clock=clock, per_endpoint=1,
                   prefetch=2, overrides=overrides)  # fmt: skip
    ingest_events(store, [make_event(big, at=T0 + i) for i in range(10)], clock.now)
    ingest_events(store, [make_event(other, at=T0 + i) for i in range(10)], clock.now)
    assert asyncio.run(d.step()) == 6 + 2  # leased: 3 slots x prefetch 2, and 1 x 2
    assert sender.most == {"big.example": 3, "other.example": 1}
