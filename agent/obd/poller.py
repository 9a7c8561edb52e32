"""What to ask the car, and when: the poll plan (pure; the caller says what time it is).

    monitors' data names ─> wanted PIDs (+ fault codes) ─> jobs, each due at its period
    every request ─> the bus budget (token bucket, ``requests_per_second``), awake cars only

Rules that keep a car safe (issue 16):
- **Awake only.** A request goes out only while the car's own frames were seen within
  ``awake_window`` (or the engine turns: rpm > 0 lately). Never the first frame on a silent bus.
- **A budget per bus.** One token per request (scan steps included), refilled at
  ``requests_per_second``, at most one in hand: a burst is impossible.
- **Back-off.** 0x21 (busy) and silence put the ECU on hold, doubling per failure (``Backoff``);
  0x31 (out of range) drops the PID for good on that ECU; 0x78 (pending) is waited for by the
  client. A dropped PID counts in ``counters``.
- **Monitors decide.** Only the PIDs the active monitors read are polled; a PID no monitor
  reads is not asked (removing the monitor stops the polling at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.backoff import Backoff
from agent.obd.addressing import Ecu
from agent.obd.messages import batches
from agent.obd.settings import ObdConfig

HOLD = Backoff(first=2.0, cap=120.0)


@dataclass(frozen=True, slots=True)
class Job:
    kind: str  # "scan" | "values" | "codes"
    ecu: Ecu | None = None
    pids: tuple[int, ...] = ()


@dataclass
class Budget:
    """A token bucket holding at most one request: never a burst."""

    rate: float
    tokens: float = 1.0
    _at: float | None = None

    def refill(self, now: float) -> None:
        if self._at is not None:
            self.tokens = min(1.0, self.tokens + (now - self._at) * self.rate)
        self._at = now if self._at is None else max(self._at, now)

    def take(self, now: float) -> bool:
        self.refill(now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self, now: float) -> float:
        """Seconds until a token is there."""
        self.refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)


@dataclass
class PollPlan:
    settings: ObdConfig
    wanted: frozenset[int] = frozenset()
    wants_codes: bool = False
    scanned: bool = False
    serving: dict[int, Ecu] = field(default_factory=dict)  # PID -> the one ECU asked for it
    ecus: tuple[Ecu, ...] = ()
    dropped: set[tuple[Ecu, int]] = field(default_factory=set)
    alone: set[tuple[Ecu, int]] = field(default_factory=set)  # asked alone after a 0x31
    counters: dict[str, int] = field(
        default_factory=lambda: {"dropped_pids": 0, "busy": 0, "silences": 0, "held": 0}
    )
    _due: dict[tuple[Ecu, tuple[int, ...]], float] = field(default_factory=dict)
    _codes_due: dict[Ecu, float] = field(default_factory=dict)
    _hold_until: dict[Ecu, float] = field(default_factory=dict)
    _failures: dict[Ecu, int] = field(default_factory=dict)
    _engine_at: float | None = None
    hold: Backoff = HOLD  # how long an ECU is held after busy/silence (tests shorten it)

    def want(self, pids: set[int] | frozenset[int], codes: bool) -> None:
        """What the monitors read now; jobs for PIDs nobody reads any more vanish."""
        self.wanted = frozenset(pids)
        self.wants_codes = codes

    def on_scan(self, ecus: list[Ecu], supported: dict[Ecu, frozenset[int]]) -> None:
        """Each PID asked of one ECU only: the first (lowest answer id) that supports it."""
        self.scanned = True
        self.ecus = tuple(ecus)
        self.serving = {}
        for ecu in ecus:
            for pid in sorted(supported.get(ecu, frozenset())):
                self.serving.setdefault(pid, ecu)

    def awake(self, now: float, last_organic: float | None) -> bool:
        window = self.settings.awake_window
        if last_organic is not None and now - last_organic <= window:
            return True
        return self._engine_at is not None and now - self._engine_at <= window

    def engine_turning(self, now: float) -> None:
        """rpm > 0 was read at ``now``: the car is awake even behind a silent gateway."""
        self._engine_at = now

    def jobs(self) -> list[Job]:
        """Every job the monitors need now, whether due or not."""
        if not self.scanned:
            return [Job("scan")] if self.wanted or self.wants_codes else []
        by_ecu: dict[Ecu, set[int]] = {}
        for pid in self.wanted:
            ecu = self.serving.get(pid)
            if ecu is not None and (ecu, pid) not in self.dropped:
                by_ecu.setdefault(ecu, set()).add(pid)
        found = []
        for ecu, pids in by_ecu.items():
            single = {p for p in pids if (ecu, p) in self.alone}
            found += [Job("values", ecu, (p,)) for p in sorted(single)]
            found += [Job("values", ecu, b) for b in batches(pids - single)]
        if self.wants_codes:
            found += [Job("codes", ecu) for ecu in self.ecus]
        return found

    def next_job(self, now: float) -> Job | None:
        """The job most overdue at ``now`` (scan first), or None."""
        best: tuple[float, Job] | None = None
        for job in self.jobs():
            if job.ecu is not None and self._hold_until.get(job.ecu, 0.0) > now:
                continue
            due = self._due_at(job)
            if due <= now and (best is None or due < best[0]):
                best = (due, job)
        return None if best is None else best[1]

    def _due_at(self, job: Job) -> float:
        if job.kind == "codes" and job.ecu is not None:
            return self._codes_due.get(job.ecu, 0.0)
        if job.kind == "values" and job.ecu is not None:
            return self._due.get((job.ecu, job.pids), 0.0)
        return 0.0

    def done(self, job: Job, now: float) -> None:
        """The job was answered: next time one period from now, the ECU's hold lifted."""
        if job.ecu is None:
            return
        self._failures.pop(job.ecu, None)
        if len(job.pids) == 1:
            self.alone.discard((job.ecu, job.pids[0]))
        if job.kind == "codes":
            self._codes_due[job.ecu] = now + self.settings.codes_period
        else:
            self._due[(job.ecu, job.pids)] = now + self.settings.pid_period

    def refused(self, job: Job, code: int, now: float) -> None:
        """A negative answer: 0x31 drops the PIDs (asked alone next to find which), 0x21 holds."""
        if job.ecu is None:
            return
        if code == 0x31 and job.kind == "values":
            if len(job.pids) == 1:
                self.dropped.add((job.ecu, job.pids[0]))
                self.counters["dropped_pids"] += 1
            else:  # one of them is refused: ask each alone to find which
                self.alone |= {(job.ecu, pid) for pid in job.pids}
            return
        self.counters["busy"] += 1
        self._hold(job.ecu, now)

    def silent(self, job: Job, now: float) -> None:
        """No answer: the ECU is held, longer each time (the car may be going to sleep)."""
        self.counters["silences"] += 1
        if job.ecu is None:
            self.scanned = False
            return
        self._hold(job.ecu, now)

    def _hold(self, ecu: Ecu, now: float) -> None:
        failures = self._failures.get(ecu, 0)
        self._failures[ecu] = failures + 1
        self._hold_until[ecu] = now + self.hold.delay(failures, 1.0)
        self.counters["held"] += 1
