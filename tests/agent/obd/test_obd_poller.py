"""The poll plan on an injected clock: monitors decide, awake only, budget, back-off."""

from __future__ import annotations

import itertools

from agent.obd.addressing import Addressing, Ecu
from agent.obd.poller import Budget, Job, PollPlan
from agent.obd.settings import ObdConfig

ECM = Addressing(False).ecu_for_answer(0x7E8)
TCM = Addressing(False).ecu_for_answer(0x7E9)
assert ECM is not None and TCM is not None


def _plan(**kw: float) -> PollPlan:
    plan = PollPlan(ObdConfig(name="obd", channel="vcan0", **kw))  # type: ignore[arg-type]
    plan.on_scan([ECM, TCM], {ECM: frozenset({0x0C, 0x0D, 0x2F}), TCM: frozenset({0x05, 0x2F})})
    return plan


def test_budget_never_allows_a_burst() -> None:
    budget = Budget(rate=1.0)
    taken = [t / 10 for t in range(0, 100) if budget.take(t / 10)]
    assert len(taken) == 10
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(taken))
    assert Budget(rate=2.0, tokens=0.0, _at=0.0).wait(0.25) == 0.25


def test_only_the_pids_monitors_read_and_each_of_one_ecu() -> None:
    plan = _plan()
    assert plan.jobs() == []
    plan.want({0x2F}, codes=False)
    assert plan.jobs() == [Job("values", ECM, (0x2F,))]  # the first ECU serving it, only
    plan.want({0x2F, 0x05, 0x0C, 0x0D}, codes=True)
    jobs = plan.jobs()
    assert Job("values", ECM, (0x0C, 0x0D, 0x2F)) in jobs and Job("values", TCM, (0x05,)) in jobs
    assert Job("codes", ECM) in jobs and Job("codes", TCM) in jobs
    plan.want(set(), codes=False)  # the monitor removed: nothing is polled
    assert plan.jobs() == [] and plan.next_job(100.0) is None


def test_unscanned_plan_asks_for_a_scan_only_when_something_is_wanted() -> None:
    plan = PollPlan(ObdConfig(name="obd", channel="vcan0"))
    assert plan.next_job(0.0) is None
    plan.want({0x0D}, codes=False)
    assert plan.next_job(0.0) == Job("scan")


def test_periods_are_kept() -> None:
    plan = _plan(pid_period=5.0)
    plan.want({0x0D}, codes=False)
    job = plan.next_job(10.0)
    assert job is not None
    plan.done(job, 10.0)
    assert plan.next_job(14.9) is None
    assert plan.next_job(15.0) == job


def test_awake_needs_recent_traffic_or_a_turning_engine() -> None:
    plan = _plan(awake_window=5.0)
    assert not plan.awake(100.0, None)  # never the first frame on a silent bus
    assert plan.awake(100.0, 96.0)
    assert not plan.awake(100.0, 94.0)
    plan.engine_turning(99.0)
    assert plan.awake(100.0, None) and not plan.awake(104.5, None)


def test_out_of_range_drops_the_pid_after_asking_it_alone() -> None:
    plan = _plan()
    plan.want({0x0C, 0x2F}, codes=False)
    batch = Job("values", ECM, (0x0C, 0x2F))
    assert plan.next_job(0.0) == batch
    plan.refused(batch, 0x31, 0.0)
    alone = {j.pids for j in plan.jobs()}
    assert alone == {(0x0C,), (0x2F,)}
    plan.refused(Job("values", ECM, (0x2F,)), 0x31, 0.0)
    plan.done(Job("values", ECM, (0x0C,)), 0.0)
    assert [j.pids for j in plan.jobs()] == [(0x0C,)]
    assert plan.counters["dropped_pids"] == 1


def test_busy_and_silence_hold_the_ecu_longer_each_time() -> None:
    plan = _plan()
    plan.want({0x0C}, codes=False)
    job = Job("values", ECM, (0x0C,))
    plan.refused(job, 0x21, 0.0)
    assert plan.next_job(1.9) is None and plan.next_job(7.0) == job
    plan.silent(job, 7.0)
    assert plan.next_job(10.9) is None  # second failure: 4 s
    assert plan.next_job(11.1) == job
    plan.done(job, 11.1)
    plan.silent(job, 20.0)
    assert plan.next_job(22.1) == job  # answered in between: back to the first step


def test_cost_per_minute() -> None:
    config = ObdConfig(name="obd", channel="can0", pid_period=5.0, codes_period=60.0)
    assert config.cost_per_minute(1, codes=False) == 12.0
    assert config.cost_per_minute(7, codes=False) == 24.0
    assert config.cost_per_minute(0, codes=True, ecus=2) == 4.0


def test_ecu_type_is_hashable_and_named() -> None:
    assert {ECM: 1}[Ecu(0x7E8, 0x7E0, False)] == 1
