"""Delivery against real HTTPS receivers (trustme CA), with an injected clock.

Each policy's attempts and spacing, the 3-day cap, batches by size and by time window, recovery
sending everything stored, 429 Retry-After, 410 Gone, TLS and redirect failures, signatures
checked by the ``standardwebhooks`` reference library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from backend.delivery.dispatcher import Dispatcher
from backend.delivery.egress import LOOPBACK_ALLOWED
from backend.delivery.retry import MAX_AGE
from backend.delivery.signing import secret_key
from backend.delivery.webhooks import AiohttpSender, MemorySender
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Receiver, Reply
from tests.backend.conftest import (
    SECRET,
    T0,
    ManualClock,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)

Make = Callable[..., Receiver]


SENDERS = {"aiohttp": AiohttpSender}
KIND = {"sender": "aiohttp"}


@pytest.fixture(autouse=True, params=sorted(SENDERS))
def sender_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs against every WebhookSender implementation (a contract test;
    one since issue 14, aiohttp)."""
    KIND["sender"] = request.param
    yield request.param
    KIND["sender"] = "aiohttp"


def dispatcher(
    store: SqliteStore, ca: CertAuthority, clock: ManualClock, *, timeout: float = 5.0, **kw: Any
) -> Dispatcher:
    d = Dispatcher(store, MemorySender(), lambda _name: secret_key(SECRET), clock=clock, **kw)
    kind = SENDERS[KIND["sender"]]
    d.sender_factory = lambda: kind(  # type: ignore[attr-defined]
        verify=ca.client_context(),
        timeout=timeout,
        connect_timeout=timeout,
        policy=LOOPBACK_ALLOWED,
    )
    return d


def drive(d: Dispatcher, clock: ManualClock, *, until: float, tick: float) -> None:
    """Step the dispatcher, advancing the clock by ``tick`` until ``until`` (a fresh httpx
    client per event loop)."""

    async def main() -> None:
        d.sender = d.sender_factory()  # type: ignore[attr-defined]
        try:
            while True:
                await d.step()
                if clock.now >= until:
                    break
                clock.advance(tick)
        finally:
            await d.sender.close()

    asyncio.run(main())


def attempt_times(store: SqliteStore, monitor_id: str) -> list[float]:
    views, _ = store.deliveries(monitor_id, None, 0, 10)
    assert len(views) == 1
    return [a.started_at - T0 for a in views[0].history]


@pytest.mark.parametrize(
    "case",
    [
        ("None", 3, 60, [0, 10]),  # one retry, retryDelay ignored
        ("Bounded", 3, 30, [0, 30, 60, 90]),
        ("Bounded", 1, 5, [0, 5]),
    ],
)
def test_policy_attempts_and_spacing(
    store: SqliteStore,
    test_ca: CertAuthority,
    receivers: Make,
    case: tuple[str, int, int, list[int]],
) -> None:
    policy, number, delay, expected = case
    rx = receivers()
    rx.respond = lambda _r: Reply(500)
    mid = add_monitor(
        store, monitor_definition(rx.url, policy=policy, retry_number=number, retry_delay=delay)
    )
    clock = ManualClock()
    ingest_events(store, [make_event(mid)], clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0 + 200, tick=5)
    assert attempt_times(store, mid) == expected
    assert len(rx.requests) == len(expected)
    view = store.deliveries(mid, None, 0, 1)[0][0]
    assert view.state == "dead" and "gave up" in view.reason


def test_always_retries_every_delay_and_stops_at_three_days(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda _r: Reply(503)
    mid = add_monitor(store, monitor_definition(rx.url, policy="Always", retry_delay=3600))
    clock = ManualClock()
    ingest_events(store, [make_event(mid)], clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0 + MAX_AGE + 7200, tick=1800)
    times = attempt_times(store, mid)
    assert times == [h * 3600.0 for h in range(73)]  # 0 h .. 72 h, nothing after the cap
    assert len(rx.requests) == 73
    assert store.deliveries(mid, "dead", 0, 1)[1] == 1


def test_signature_verifies_and_webhook_id_is_stable_across_retries(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda r: Reply(500 if len(rx.requests) == 0 else 201)
    attributes = [
        {"type": "Header", "key": "X-Vehicle", "value": "$VIN"},
        {"type": "Query", "key": "monitor", "value": "$monitorId"},
        {"type": "Body", "key": "fleet", "value": "$fleetID"},
    ]
    mid = add_monitor(
        store, monitor_definition(rx.url + "/hook", policy="Bounded", attributes=attributes)
    )
    clock = ManualClock()
    event = make_event(mid)
    ingest_events(store, [event], clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0 + 20, tick=10)
    first, second = rx.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    body = Webhook(SECRET).verify(second.body, second.headers)
    assert second.target == f"/hook?monitor={mid}"
    assert second.headers["x-vehicle"] == event.vin
    assert body["monitorId"] == mid
    assert body["attributes"] == [{"key": "fleet", "value": "fleet-1"}]
    assert body["events"][0]["vin"] == event.vin
    assert body["events"][0]["values"][0]["value"]["body"]["literalValue"] == "131"
    assert store.deliveries(mid, "delivered", 0, 1)[1] == 1


def test_batches_by_size_then_by_time_window(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    mid = add_monitor(store, monitor_definition(rx.url, batch=(3, 60)))
    clock = ManualClock()
    events = [make_event(mid, at=T0 + i * 0.001, value=str(140 + i)) for i in range(7)]
    ingest_events(store, events, clock.now)
    d = dispatcher(store, test_ca, clock)
    drive(d, clock, until=T0 + 59, tick=59)
    sizes = [len(json.loads(r.body)["events"]) for r in rx.requests]
    assert sizes == [3, 3]  # two full batches at once; the seventh waits for its window
    drive(d, clock, until=T0 + 60, tick=1)
    bodies = [json.loads(r.body) for r in rx.wait_for(3)]
    assert [len(b["events"]) for b in bodies] == [3, 3, 1]
    batches = sorted(
        [e["values"][0]["value"]["body"]["literalValue"] for e in b["events"]] for b in bodies
    )  # the two full batches go out concurrently; within a batch the order is kept
    assert batches == [["140", "141", "142"], ["143", "144", "145"], ["146"]]


def test_query_vin_disables_batching(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    attributes = [{"type": "Query", "key": "vin", "value": "$vin"}]
    mid = add_monitor(store, monitor_definition(rx.url, batch=(10, 60), attributes=attributes))
    clock = ManualClock()
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(3)], clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0, tick=1)
    assert [len(json.loads(r.body)["events"]) for r in rx.wait_for(3)] == [1, 1, 1]


def test_recovery_sends_everything_stored(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    healthy = {"on": False}
    rx.respond = lambda _r: Reply(200 if healthy["on"] else 500)
    mid = add_monitor(store, monitor_definition(rx.url, policy="Always", retry_delay=600))
    clock = ManualClock()
    d = dispatcher(store, test_ca, clock)
    ingest_events(store, [make_event(mid, value="1")], clock.now)
    drive(d, clock, until=T0, tick=1)  # first failure: the monitor is in retry
    later = [make_event(mid, at=T0 + i, value=str(i)) for i in (2, 3, 4)]
    ingest_events(store, later, T0 + 5)
    drive(d, clock, until=T0 + 590, tick=10)
    assert len(rx.requests) == 1  # the later notifications wait behind the first one
    assert store.depth()["retrying"] == 1 and store.depth()["pending"] == 3
    healthy["on"] = True
    drive(d, clock, until=T0 + 600, tick=10)  # the retry succeeds ...
    drive(d, clock, until=T0 + 600, tick=1)  # ... and everything stored goes out at once
    values = [json.loads(r.body)["events"][0]["values"][0]["value"]["body"]["literalValue"]
              for r in rx.requests]  # fmt: skip
    assert values[:2] == ["1", "1"]
    assert sorted(values[2:]) == ["2", "3", "4"]
    assert store.deliveries(mid, "delivered", 0, 10)[1] == 4


def test_429_retry_after_is_honoured(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda _r: Reply(429, (("Retry-After", "120"),)) if not rx.requests else Reply(200)
    mid = add_monitor(
        store, monitor_definition(rx.url, policy="Bounded", retry_number=3, retry_delay=10)
    )
    clock = ManualClock()
    ingest_events(store, [make_event(mid)], clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0 + 200, tick=10)
    assert attempt_times(store, mid) == [0, 120]


def test_410_stops_delivery_and_fails_the_monitor(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda _r: Reply(410)
    mid = add_monitor(store, monitor_definition(rx.url, policy="Always", retry_delay=10))
    clock = ManualClock()
    d = dispatcher(store, test_ca, clock, per_endpoint=1)
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(3)], clock.now)
    drive(d, clock, until=T0 + 100, tick=10)
    assert len(rx.requests) == 1
    monitor = store.get_monitor(mid)
    assert monitor is not None and monitor.status == "Failed"
    dead, total = store.deliveries(mid, "dead", 0, 10)
    assert total == 3 and all("410" in v.reason for v in dead)


def test_untrusted_certificate_redirect_and_plain_http_are_failures(
    store: SqliteStore,
    test_ca: CertAuthority,
    receivers: Make,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    stranger = Receiver(
        CertAuthority.create(tmp_path_factory.mktemp("other")).server_context()
    ).start()
    redirect = receivers()
    redirect.respond = lambda _r: Reply(302, (("Location", "https://127.0.0.1:1/"),))
    plain = receivers(tls=False)
    try:
        ids = [
            add_monitor(store, monitor_definition(url, policy="None"))
            for url in (stranger.url, redirect.url, plain.url)
        ]
        clock = ManualClock()
        ingest_events(store, [make_event(m) for m in ids], clock.now)
        drive(dispatcher(store, test_ca, clock), clock, until=T0, tick=1)
        errors = [store.deliveries(m, None, 0, 1)[0][0].history[0].error for m in ids]
        assert errors[0] == "TLS failed"  # coarse: the certificate is not described
        assert errors[1] == "HTTP 302" and len(redirect.requests) == 1
        assert "not https" in errors[2] and plain.requests == []
        assert store.deliveries(ids[2], "dead", 0, 1)[1] == 1  # refused: not retried
    finally:
        stranger.stop()


def test_dead_letter_can_be_resent(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda _r: Reply(500 if len(rx.requests) < 2 else 200)
    mid = add_monitor(store, monitor_definition(rx.url, policy="None"))
    clock = ManualClock()
    d = dispatcher(store, test_ca, clock)
    ingest_events(store, [make_event(mid)], clock.now)
    drive(d, clock, until=T0 + 20, tick=10)
    (dead,), _ = store.deliveries(mid, "dead", 0, 1)
    assert store.resend(dead.delivery_id, clock.now, MAX_AGE)
    assert not store.resend(dead.delivery_id, clock.now, MAX_AGE)  # no longer dead
    drive(d, clock, until=clock.now, tick=1)
    view = store.get_delivery(dead.delivery_id)
    assert view is not None and view.state == "delivered"
    assert [a.number for a in view.history] == [1, 2, 3]


def test_a_timing_out_endpoint_does_not_delay_another(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    slow, fast = receivers(), receivers()
    slow.respond = lambda _r: Reply(200, delay=30)  # never answers within the timeout
    slow_id = add_monitor(store, monitor_definition(slow.url, policy="Always", retry_delay=1))
    fast_id = add_monitor(store, monitor_definition(fast.url))

    clock = ManualClock(time.time())
    d = dispatcher(store, test_ca, clock, timeout=3.0, per_endpoint=2)
    # The slow endpoint gets its events first, more than its concurrency limit.
    ingest_events(store, [make_event(slow_id, at=clock.now + i) for i in range(5)], clock.now)
    ingest_events(store, [make_event(fast_id, at=clock.now + i) for i in range(5)], clock.now)

    async def main() -> tuple[int, int]:
        d.sender = d.sender_factory()  # type: ignore[attr-defined]
        stop = asyncio.Event()
        runner = asyncio.create_task(d.run(stop))
        try:
            while len(fast.requests) < 5:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            endpoint = f"https://127.0.0.1:{slow.port}"
            snapshot = (len(slow.requests), d.in_flight[endpoint])
        finally:
            stop.set()
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            await d.sender.close()
        return snapshot

    slow_seen, slow_in_flight = asyncio.run(main())
    # All five fast deliveries went out while the slow endpoint still held its two slots.
    assert slow_seen == 2 and slow_in_flight == 2
    assert store.deliveries(fast_id, "delivered", 0, 10)[1] == 5
    assert store.deliveries(slow_id, "delivered", 0, 10)[1] == 0


def test_held_notifications_expire_after_three_days(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make
) -> None:
    rx = receivers()
    rx.respond = lambda _r: Reply(500)
    mid = add_monitor(store, monitor_definition(rx.url, policy="Always", retry_delay=86400))
    clock = ManualClock()
    d = dispatcher(store, test_ca, clock)
    ingest_events(store, [make_event(mid)], clock.now)
    drive(d, clock, until=T0, tick=1)
    ingest_events(store, [make_event(mid, at=T0 + 3600)], T0 + 3600)  # held behind the first
    assert store.expire(T0 + MAX_AGE + 3599, MAX_AGE) == 0
    assert store.expire(T0 + MAX_AGE + 3601, MAX_AGE) == 1
    (dead,), _ = store.deliveries(mid, "dead", 0, 5)
    assert dead.reason.startswith("expired") and dead.history == []


@pytest.mark.parametrize("policy", ["Bounded", "Always"])
def test_late_uploads_get_the_whole_retry_window(
    store: SqliteStore, test_ca: CertAuthority, receivers: Make, policy: str
) -> None:
    """Issue 11: an event the vehicle held for ten days is retried like a fresh one; the 3-day
    cap counts from the backend's receipt, not from eventDate."""
    rx = receivers()
    refused: set[bytes] = set()

    def first_refused(request: Any) -> Reply:
        if request.body in refused:
            return Reply(201)
        refused.add(request.body)
        return Reply(503)

    rx.respond = first_refused
    mid = add_monitor(store, monitor_definition(rx.url, policy=policy, retry_delay=10))
    clock = ManualClock()
    ten_days_ago = clock.now - 10 * 86400
    events = [make_event(mid, at=ten_days_ago + i, value=str(140 + i)) for i in range(2)]
    events += [make_event(mid, at=clock.now - i, value=str(150 + i)) for i in range(2)]
    ingest_events(store, events, clock.now)
    drive(dispatcher(store, test_ca, clock), clock, until=T0 + 30, tick=5)
    assert store.deliveries(mid, "delivered", 0, 10)[1] == 4
    by_id: dict[str, list[Any]] = {}
    for request in rx.requests:
        by_id.setdefault(request.headers["webhook-id"], []).append(request)
    assert len(by_id) == 4
    for first, *retries in by_id.values():
        assert len(retries) == 1, "each event: one refused attempt, then one retry"
        assert retries[0].body == first.body
    dates = sorted(json.loads(r.body)["events"][0]["eventDate"] for r in rx.requests)
    assert dates[0].startswith(time.strftime("%Y-%m-%d", time.gmtime(ten_days_ago)))
