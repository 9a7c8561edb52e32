"""The poller thread against the twin on a virtual bus: monitors decide what is asked, the
budget holds (counted on the recorded frames, not timed), a quiet car is left alone, negative
answers are handled, fault codes become values monitors can fire on."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager

from agent.backoff import Backoff
from agent.model import Sample
from agent.obd.faults import encode_dtc
from agent.obd.link import PythonCanLink, SentFrame
from agent.obd.names import DTC_CONFIRMED_COUNT, DTC_NEW, DTC_PENDING_COUNT, FREEZE_CODE
from agent.obd.service import ObdService
from agent.obd.settings import ObdConfig
from tests.agent.obd.twin_car import Bench, bench, wait_for

FAST = ObdConfig(
    name="obd",
    channel="virtual",
    requests_per_second=10.0,
    pid_period=0.2,
    codes_period=0.3,
    awake_window=0.6,
    timeout=0.1,
)


@contextmanager
def poller(b: Bench, config: ObdConfig = FAST) -> Iterator[tuple[ObdService, list[Sample]]]:
    samples: list[Sample] = []
    links: list[PythonCanLink] = []

    def open_link() -> PythonCanLink:
        links.append(b.link())
        return links[-1]

    hold = Backoff(first=0.4, cap=2.0)  # the real first step is 2 s
    service = ObdService(config, samples.append, link_factory=open_link, hold=hold)
    service.start()
    try:
        yield service, samples
    finally:
        service.stop()


def _values(samples: list[Sample], name: str) -> list[object]:
    return [s.value for s in list(samples) if s.name == name]


def _requests(sent: list[SentFrame]) -> list[SentFrame]:
    """Frames that start a request (single or first frames), not flow control."""
    return [f for f in sent if f.data[0] >> 4 in (0, 1)]


def test_monitors_decide_the_pids_and_the_budget_holds() -> None:
    with bench() as b, poller(b) as (service, samples):
        service.want({"vehicle.energy.fuel.level"})
        wait_for(lambda: len(_values(samples, "vehicle.energy.fuel.level")) >= 4)
        assert _values(samples, "vehicle.energy.fuel.level")[0] == 40.0
        asked = [(ecu, r) for ecu, r in b.car.requests if r[:1] == b"\x01" and r[1] % 0x20]
        assert {r for _, r in asked} == {b"\x01\x2f"}  # fuel level only, not the whole list
        assert {ecu for ecu, _ in asked} == {"7E8"}  # one ECU, though the TCM has 2F too
        assert service.capabilities is not None and service.capabilities.vin is not None
        assert "vehicle.odometer" in service.capabilities.data_names
        service.want(set())  # the monitor removed
        before = len(b.car.requests)
        time.sleep(4 * FAST.pid_period)
        settled = len(b.car.requests)
        time.sleep(4 * FAST.pid_period)
        assert settled - before <= 1 and len(b.car.requests) == settled  # polling stopped
        sent = [f for f in _requests(list(service.link.sent))]  # type: ignore[union-attr]
    # the budget: no two requests closer than 1/rate on the link's own clock (a token bucket
    # holding one token), whatever the scan and the period asked for
    gaps = [b2.at - a.at for a, b2 in itertools.pairwise(sent)]
    assert len(sent) >= 10 and min(gaps) >= 1 / FAST.requests_per_second - 0.01


def test_nothing_is_sent_to_a_quiet_car_and_it_is_never_woken() -> None:
    with bench() as b:
        b.runner.organic = False
        b.car.asleep = True
        with poller(b) as (service, samples):
            service.want({"vehicle.kinetic.speed", "obd.dtc.new"})
            time.sleep(1.0)
            assert service.link is not None and list(service.link.sent) == []
            assert b.runner.woken_by == 0 and samples == []
            b.car.asleep = False  # the driver comes: ECUs, then their traffic
            b.runner.organic = True
            wait_for(lambda: _values(samples, "vehicle.kinetic.speed"))
            b.runner.organic = False  # parked: the car's traffic stops first...
            quiet_at = time.monotonic()
            time.sleep(FAST.awake_window + 1.5)  # (margins for a loaded machine's scheduler)
            b.car.asleep = True  # ...then its ECUs sleep
            asleep_sent = len(service.link.sent)
            time.sleep(1.0)
            assert len(service.link.sent) == asleep_sent
            assert b.runner.woken_by == 0
            last = max(f.at for f in _requests(list(service.link.sent)))
            assert last <= quiet_at + FAST.awake_window + 1.0  # a request in flight, at most


def test_negative_answers_drop_hold_and_wait() -> None:
    with bench() as b:
        ecm = b.car.ecus[0]
        ecm.refused[0x42] = 0x31  # the voltage PID is listed, but out of range when asked
        with poller(b) as (service, samples):
            service.want({"vehicle.kinetic.speed", "obd.controlModule.voltage"})
            wait_for(lambda: service.capabilities)
            ecm.busy = 2  # busy twice
            ecm.slow = 3  # "response pending" before three answers
            wait_for(lambda: len(_values(samples, "vehicle.kinetic.speed")) >= 3)
            assert ecm.busy == 0 and ecm.slow == 0
            assert _values(samples, "obd.controlModule.voltage") == []
            assert service.plan.counters["dropped_pids"] == 1
            assert service.plan.counters["busy"] == 2
            voltage = [r for _, r in b.car.requests if r[:1] == b"\x01" and 0x42 in r[1:]]
            count = len(voltage)
            time.sleep(5 * FAST.pid_period)
            assert (
                len([r for _, r in b.car.requests if r[:1] == b"\x01" and 0x42 in r[1:]]) == count
            )
            assert count <= 4  # asked while busy (2), the batch refused, then alone: dropped
            assert service.client is not None and service.client.counters["bad_answers"] == 0


def test_fault_codes_become_values_monitors_fire_on() -> None:
    with bench() as b:
        ecm = b.car.ecus[0]
        ecm.confirmed, ecm.pending = [], []
        ecm.freeze = {0x02: encode_dtc("P0420"), 0x05: b"\x7b", 0x0C: b"\x0b\xb8"}
        with poller(b) as (service, samples):
            service.want({DTC_NEW, FREEZE_CODE, "obd.dtc.freeze.coolantTemp"})
            wait_for(lambda: _values(samples, DTC_NEW) == ["none"])  # the baseline
            ecm.pending = ["P0420"]
            wait_for(lambda: _values(samples, DTC_PENDING_COUNT)[-1:] == [1])
            assert _values(samples, DTC_NEW) == ["none"]  # pending is not confirmed
            ecm.confirmed, ecm.pending = ["P0420"], []
            wait_for(lambda: _values(samples, DTC_NEW)[-1:] == ["P0420"])
            assert _values(samples, DTC_CONFIRMED_COUNT)[-1] == 1
            # the freeze frame was read first: an event on the new code can carry it
            order = [s.name for s in samples]
            assert order.index(FREEZE_CODE) < order.index(DTC_NEW, 1)
            assert _values(samples, FREEZE_CODE) == ["P0420"]
            assert _values(samples, "obd.dtc.freeze.coolantTemp") == [83.0]
            assert _values(samples, "obd.dtc.freeze.rpm") == []  # no monitor names it
            ecm.confirmed = []
            wait_for(lambda: _values(samples, DTC_NEW)[-1:] == ["none"])
            ecm.confirmed = ["P0420"]  # the same code again: a change again
            wait_for(lambda: _values(samples, DTC_NEW)[-1:] == ["P0420"])
            assert _values(samples, DTC_NEW) == ["none", "P0420", "none", "P0420"]
            codes = {r for _, r in b.car.requests if r in (b"\x03", b"\x07", b"\x0a", b"\x04")}
            assert codes == {b"\x03", b"\x07"}  # never 04 (clear), never permanent in polling
            frozen = [r for _, r in b.car.requests if r[:1] == b"\x02"]
            assert frozen.count(b"\x02\x05\x00") == 2  # at each confirmation, of that ECU


def test_a_bus_that_fails_is_reopened_and_the_thread_lives() -> None:
    """The adapter goes away under the poller (its bus shut down): the read error becomes an
    ObdError, the link is closed and opened again after the backoff, polling goes on."""
    with bench() as b:
        opened: list[PythonCanLink] = []

        def open_link() -> PythonCanLink:
            opened.append(b.link())
            return opened[-1]

        samples: list[Sample] = []
        service = ObdService(FAST, samples.append, link_factory=open_link)
        service.start()
        try:
            service.want({"vehicle.kinetic.speed"})
            wait_for(lambda: _values(samples, "vehicle.kinetic.speed"))
            opened[0].mux.bus.shutdown()  # the USB adapter is pulled out
            wait_for(lambda: len(opened) == 2)
            count = len(_values(samples, "vehicle.kinetic.speed"))
            wait_for(lambda: len(_values(samples, "vehicle.kinetic.speed")) > count)
            assert service.counters["link_errors"] == 1
        finally:
            service.stop()
        assert not service._thread.is_alive()
