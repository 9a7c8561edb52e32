"""One ``[[obd]]`` bus in its own thread: the poll plan, the client, values out as ``Sample``.

The thread only puts ``Sample`` values on the agent's inbox (the main loop alone touches the
vehicle state); the main loop tells it which data names the monitors read (``want``), a plain
attribute swapped whole. Every request passes ``_gate``: the car must be awake and the bus
budget must hold a token, else the thread waits (or gives up the job when the car went quiet).
Link failures (device gone) are logged and the link reopened with the agent's backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.backoff import Backoff, Retries
from agent.errors import EdgemonError, NegativeAnswer, ObdError
from agent.model import Sample
from agent.obd import messages as m
from agent.obd.addressing import Ecu
from agent.obd.client import Asleep, Link, ObdClient
from agent.obd.faults import FaultChange, FaultDiffer, decode_dtc
from agent.obd.names import (
    DTC_CONFIRMED_COUNT,
    DTC_NEW,
    DTC_PENDING_COUNT,
    FAULT_NAMES,
    FREEZE_CODE,
    NO_CODE,
    freeze_name,
    freeze_pids_for,
    pids_for,
)
from agent.obd.pids import ENGINE_RUNNING, PIDS
from agent.obd.poller import Budget, Job, PollPlan
from agent.obd.scan_cache import ScanCache, cache_path

if TYPE_CHECKING:
    from agent.obd.recorded import CandumpRecorder
from agent.obd.settings import ObdConfig

log = logging.getLogger(__name__)
REOPEN = Backoff(first=1.0, cap=60.0)
CHARGING_VOLTS = 13.2  # a 12 V system above this is being charged: the engine runs


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What this car can serve, known after a scan (the manifest published over MQTT)."""

    vin: str | None
    ecus: tuple[str, ...]
    pids: tuple[int, ...]
    data_names: tuple[str, ...]


def open_link(
    config: ObdConfig,
    clock: Callable[[], float] = time.monotonic,
    tap: Callable[[int, bool, bytes, float | None], None] | None = None,
) -> Link:
    """The transport the configuration names (python-can and can-isotp imported only here);
    ``tap`` sees every frame (a recording: the pure-Python transport only)."""
    from agent.obd.addressing import Addressing  # noqa: PLC0415

    addressing = Addressing(config.extended)
    if config.transport == "kernel":
        if tap is not None:
            raise ObdError("recording needs transport python (the kernel hides the frames)")
        from agent.obd.kernel import KernelLink  # noqa: PLC0415

        return KernelLink(config.channel, addressing, clock=clock)
    import can  # noqa: PLC0415

    from agent.obd.link import PythonCanLink  # noqa: PLC0415

    kwargs = dict(config.options)
    if config.bitrate is not None:
        kwargs["bitrate"] = config.bitrate
    try:
        bus = can.Bus(interface=config.interface, channel=config.channel, **kwargs)
    except (can.CanError, OSError, ValueError) as exc:
        raise ObdError(f"cannot open {config.interface} {config.channel}: {exc}") from exc
    return PythonCanLink(bus, addressing, clock=clock, tap=tap)


def _tap(link: Link, recorder: CandumpRecorder) -> None:
    """Record every frame of a pure-Python link (the kernel's sockets hide them: refused by
    the configuration check)."""
    from agent.obd.link import PythonCanLink  # noqa: PLC0415

    if isinstance(link, PythonCanLink):
        link.mux.tap = recorder.tap


class ObdService:
    def __init__(
        self,
        config: ObdConfig,
        put: Callable[[Sample], None],
        *,
        link_factory: Callable[[], Link] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        hold: Backoff | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.config = config
        self._put = put
        self._open = link_factory or (lambda: open_link(config, clock))
        self.clock = clock
        self.wall = wall
        self.plan = PollPlan(config) if hold is None else PollPlan(config, hold=hold)
        self.budget = Budget(config.requests_per_second)
        self.differ = FaultDiffer()
        self._faults_read = False
        self.capabilities: Capabilities | None = None
        self.link: Link | None = None
        self.client: ObdClient | None = None
        # (PIDs, fault codes, freeze frame PIDs, the freeze frame's code): swapped whole
        self._wanted: tuple[frozenset[int], bool, frozenset[int], bool] = (
            frozenset(),
            False,
            frozenset(),
            False,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"obd-{config.name}", daemon=True)
        self.counters = {"samples": 0, "asleep_skips": 0, "link_errors": 0, "full_scans": 0}
        self.cache: ScanCache | None = None
        self.recorder: CandumpRecorder | None = None  # [[obd]] record: the session's frames
        if cache_dir is not None and config.scan_cache_age > 0:
            from agent.obd.addressing import Addressing  # noqa: PLC0415

            self.cache = ScanCache(
                cache_path(cache_dir, config.name),
                Addressing(config.extended),
                config.scan_cache_age,
                wall,
            )

    # -- from the main loop ------------------------------------------------------------------

    def want(self, names: set[str] | frozenset[str]) -> None:
        """The data names the monitors read now (PIDs and fault codes derive from them)."""
        names = frozenset(names)
        self._wanted = (
            frozenset(pids_for(names)),
            bool(names & FAULT_NAMES),
            frozenset(freeze_pids_for(names)),
            FREEZE_CODE in names,
        )

    def start(self) -> None:
        if self.config.record is not None:
            from agent.obd.recorded import CandumpRecorder  # noqa: PLC0415

            try:
                self.recorder = CandumpRecorder(
                    self.config.record, self.config.channel, append=True
                )
            except ObdError as exc:  # the agent polls on without recording
                log.warning("OBD bus %s: %s", self.config.name, exc)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5.0)
        if self.recorder is not None:
            self.recorder.close()

    def snapshot(self) -> dict[str, int]:
        pids, codes, _, _ = self._wanted
        ecus = max(1, len(self.plan.ecus))
        merged = dict(self.counters)
        merged["requests_per_minute"] = round(self.config.cost_per_minute(len(pids), codes, ecus))
        merged.update({f"plan.{k}": v for k, v in self.plan.counters.items()})
        if self.client is not None:
            merged.update({f"client.{k}": v for k, v in self.client.counters.items()})
        if self.cache is not None:
            merged.update({f"scan_cache.{k}": v for k, v in self.cache.counters.items()})
        if self.recorder is not None:
            self.recorder.flush()  # with each status: a recording readable while it grows
            merged.update({f"record.{k}": v for k, v in self.recorder.counters.items()})
        return merged

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        """Open the link, poll; a failed link is closed and opened again after the backoff,
        which resets only once the link has produced values (no spinning on a dead bus)."""
        retries = Retries(REOPEN)
        while not self._stop.is_set():
            samples = self.counters["samples"]
            try:
                self.link = self._open()
                if self.recorder is not None:
                    _tap(self.link, self.recorder)
            except EdgemonError as exc:
                self.counters["link_errors"] += 1
                log.warning("OBD bus %s: %s", self.config.name, exc)
                self._stop.wait(retries.next_delay())
                continue
            self.client = ObdClient(
                self.link, timeout=self.config.timeout, clock=self.clock, before_send=self._gate
            )
            try:
                self._poll()
            except ObdError as exc:
                self.counters["link_errors"] += 1
                log.warning("OBD bus %s: %s", self.config.name, exc)
            finally:
                self.link.close()
            if self.counters["samples"] > samples:
                retries.reset()
            self._stop.wait(retries.next_delay())

    def _poll(self) -> None:
        assert self.link is not None
        while not self._stop.is_set():
            pids, codes, _, _ = self._wanted
            self.plan.want(pids, codes)
            self.link.listen(0.05)
            now = self.clock()
            if not self.plan.awake(now, self.link.last_organic):
                continue
            job = self.plan.next_job(now)
            if job is None:
                continue
            try:
                self._execute(job)
            except Asleep:
                self.counters["asleep_skips"] += 1

    def _gate(self) -> None:
        """Before every request: awake, and a token in the budget (waiting for it)."""
        assert self.link is not None
        while True:
            now = self.clock()
            if self._stop.is_set() or not self.plan.awake(now, self.link.last_organic):
                raise Asleep("the car is quiet")
            if self.budget.take(now):
                return
            self.link.listen(min(0.05, max(0.001, self.budget.wait(now))))

    def _execute(self, job: Job) -> None:
        if job.kind == "scan":
            self._scan()
        elif job.kind == "values":
            self._values(job)
        else:
            self._codes(job)

    def _scan(self) -> None:
        """With a cache: the VIN first, and a known car's ECUs and PIDs from the file; else
        (or on a miss) the full scan, then cached under the VIN."""
        assert self.client is not None
        client = self.client
        vin: str | None = None
        if self.cache is not None:
            vin = client.vin()
            hit = self.cache.lookup(vin) if vin is not None else None
            if hit is not None:
                log.info("OBD bus %s: scan of %s from the cache", self.config.name, vin)
                self._scanned(vin, list(hit.ecus), hit.supported)
                return
        ecus = client.discover()
        if not ecus:
            self.plan.silent(Job("scan"), self.clock())
            return
        self.counters["full_scans"] += 1
        supported = {ecu: client.supported_pids(ecu) for ecu in ecus}
        if self.cache is None:  # with a cache, asked already (once is enough)
            vin = client.vin()
        if self.cache is not None and vin is not None:
            self.cache.store(vin, ecus, supported)
        self._scanned(vin, ecus, supported)

    def _scanned(
        self, vin: str | None, ecus: list[Ecu], supported: dict[Ecu, frozenset[int]]
    ) -> None:
        self.plan.on_scan(ecus, supported)
        pids = sorted(self.plan.serving)
        names = [PIDS[p].data_name for p in pids if p in PIDS]
        if 0x0C in pids:
            names.append(ENGINE_RUNNING)
        names += sorted(FAULT_NAMES)
        self.capabilities = Capabilities(
            vin, tuple(e.name for e in ecus), tuple(pids), tuple(names)
        )
        log.info(
            "OBD bus %s: %d ECU(s), VIN %s, %d PID(s) supported",
            self.config.name, len(ecus), vin or "unknown", len(pids),
        )  # fmt: skip

    def _values(self, job: Job) -> None:
        assert self.client is not None and job.ecu is not None
        try:
            values = self.client.values(job.ecu, job.pids)
        except NegativeAnswer as exc:
            self.plan.refused(job, exc.code, self.clock())
            return
        except Asleep:
            raise
        except ObdError:
            self.plan.silent(job, self.clock())
            return
        now, at = self.clock(), self.wall()
        self.plan.done(job, now)
        max_age = 3 * self.config.pid_period + self.config.timeout
        for pid, value in values.items():
            self._emit(Sample(PIDS[pid].data_name, value, at, max_age))
            if pid == 0x0C:
                self._emit(Sample(ENGINE_RUNNING, value > 0, at, max_age))
            if (pid == 0x0C and value > 0) or (pid == 0x42 and value >= CHARGING_VOLTS):
                self.plan.engine_turning(now)  # awake even behind a silent gateway

    def _codes(self, job: Job) -> None:
        assert self.client is not None and job.ecu is not None
        confirmed = self.client.codes(job.ecu, m.STORED_CODES)
        pending = self.client.codes(job.ecu, m.PENDING_CODES)
        if confirmed is None or pending is None:
            self.plan.silent(job, self.clock())
            return
        self.plan.done(job, self.clock())
        had = bool(self.differ.confirmed())
        changes = self.differ.update(job.ecu.name, confirmed, pending)
        if any(c.change == "confirmed" for c in changes):
            self._freeze_frame(job.ecu)  # before obd.dtc.new: an event on it can carry them
        self._emit_faults(changes, had)

    def _freeze_frame(self, ecu: Ecu) -> None:
        """Freeze frame 0 of ``ecu``: the code that stored it and the PIDs monitors name."""
        assert self.client is not None
        _, _, pids, code = self._wanted
        at = self.wall()
        if code and (found := self.client.freeze_frame(ecu, 0x02)) and len(found.raw) >= 2:
            self._emit(Sample(FREEZE_CODE, decode_dtc(found.raw[0], found.raw[1]), at))
        for pid in sorted(pids):
            frozen = self.client.freeze_frame(ecu, pid)
            if frozen is not None and frozen.value is not None:
                self._emit(Sample(freeze_name(pid), frozen.value, at))

    def _emit_faults(self, changes: list[FaultChange], had: bool) -> None:
        """Counts every read; ``obd.dtc.new`` at the first read (the newest code present, or
        ``none``), at each newly confirmed code, and back to ``none`` once all are cleared."""
        at = self.wall()
        for change in changes:
            log.info("OBD fault code %s on %s: %s", change.code, change.ecu, change.change)
        confirmed = self.differ.confirmed()
        if not self._faults_read:
            self._faults_read = True
            present = [c.code for c in changes if c.change == "present"]
            self._emit(Sample(DTC_NEW, present[-1] if present else NO_CODE, at))
        for change in changes:
            if change.change == "confirmed":
                self._emit(Sample(DTC_NEW, change.code, at))
        if had and not confirmed:
            self._emit(Sample(DTC_NEW, NO_CODE, at))
        self._emit(Sample(DTC_CONFIRMED_COUNT, len(confirmed), at))
        self._emit(Sample(DTC_PENDING_COUNT, len(self.differ.pending()), at))

    def _emit(self, sample: Sample) -> None:
        self.counters["samples"] += 1
        self._put(sample)
