"""Asking ECUs: one request, its answers (functional: every ECU; physical: one), and the scan.

The exchange follows ISO 15765-4 timing: answers are awaited ``timeout`` seconds (P2, 50 ms
in the standard, more here for slow gateways); a 0x78 "response pending" extends the wait to
``pending_timeout`` (P2*, 5 s). Everything an ECU sends is parsed by ``messages``/``faults``;
a malformed answer is counted (``counters["bad_answers"]``) and skipped, never raised past here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from agent.errors import NegativeAnswer, ObdError
from agent.obd import messages as m
from agent.obd.addressing import Ecu
from agent.obd.faults import parse_codes
from agent.obd.link import Answer
from agent.obd.pids import BITMAP_PIDS

log = logging.getLogger(__name__)
T = TypeVar("T")


class Link(Protocol):
    """What the client needs of a transport (``PythonCanLink``, ``KernelLink``)."""

    last_organic: float | None

    def send(self, payload: bytes, ecu: Ecu | None = None) -> None: ...

    def receive(self, timeout: float) -> list[Answer]: ...

    def listen(self, timeout: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EcuScan:
    ecu: Ecu
    name: str | None
    pids: frozenset[int]
    confirmed: tuple[str, ...]
    pending: tuple[str, ...]
    permanent: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scan:
    vin: str | None
    ecus: tuple[EcuScan, ...]
    problems: tuple[str, ...] = ()


class Asleep(ObdError):
    """The car stopped its own traffic: nothing more is sent to it now."""


@dataclass
class ObdClient:
    link: Link
    timeout: float = 0.2
    pending_timeout: float = 5.0
    clock: Callable[[], float] = time.monotonic
    # Called before every request (the poller's budget and awake check; may raise Asleep).
    before_send: Callable[[], None] | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "requests": 0,
            "answers": 0,
            "negative": 0,
            "bad_answers": 0,
            "stale_answers": 0,
        }
    )

    def ask(self, request: bytes, ecu: Ecu | None = None) -> dict[Ecu, bytes]:
        """Send ``request`` (functionally when ``ecu`` is None) and collect the answers, one per
        ECU; a 0x78 "pending" answer extends the wait and is not returned."""
        if self.before_send is not None:
            self.before_send()
        self.counters["requests"] += 1
        self.link.send(request, ecu)
        deadline = self.clock() + self.timeout
        answers: dict[Ecu, bytes] = {}
        while (left := deadline - self.clock()) > 0:
            for answer in self.link.receive(left):
                if ecu is not None and answer.ecu != ecu:
                    continue
                payload = answer.payload
                if not m.answers_request(request, payload):
                    self.counters["stale_answers"] += 1  # late, to an earlier request
                    continue
                if payload[:1] == bytes([m.NEGATIVE]) and payload[2:3] == bytes(
                    [m.RESPONSE_PENDING]
                ):
                    deadline = max(deadline, self.clock() + self.pending_timeout)
                    continue
                self.counters["answers"] += 1
                answers[answer.ecu] = payload
            if ecu is not None and ecu in answers:
                break
        return answers

    def discover(self) -> list[Ecu]:
        """ECUs answering a functional 01 00, by answer id."""
        request = m.current_data([0x00])
        found = []
        for ecu, answer in self.ask(request).items():
            if self._parsed(m.split_current_data, request, answer) is not None:
                found.append(ecu)
        return sorted(found, key=lambda e: e.answer_id)

    def supported_pids(self, ecu: Ecu) -> frozenset[int]:
        """Every PID ``ecu`` says it supports, following the 00/20/40... bitmap chain."""
        pids: set[int] = set()
        for base in BITMAP_PIDS:
            request = m.current_data([base])
            answer = self.ask(request, ecu).get(ecu)
            if answer is None:
                break
            parts = self._parsed(m.split_current_data, request, answer)
            if not parts or base not in parts:
                break
            marked = self._parsed(m.bitmap_pids, base, parts[base])
            if marked is None:
                break
            pids |= marked
            if base + 0x20 not in marked:
                break
        return frozenset(p for p in pids if p % 0x20)  # bitmap PIDs are not data

    def vin(self) -> str | None:
        request = m.vehicle_info(m.VIN_INFOTYPE)
        for answer in self.ask(request).values():
            vin = self._parsed(m.parse_vin, request, answer)
            if vin is not None:
                return vin
        return None

    def ecu_name(self, ecu: Ecu) -> str | None:
        request = m.vehicle_info(m.ECU_NAME_INFOTYPE)
        answer = self.ask(request, ecu).get(ecu)
        return None if answer is None else self._parsed(m.parse_ecu_name, request, answer)

    def codes(self, ecu: Ecu, service: int) -> list[str] | None:
        """The ECU's codes of service 03, 07 or 0A; None when it gave no readable answer."""
        request = m.codes_request(service)
        answer = self.ask(request, ecu).get(ecu)
        return None if answer is None else self._parsed(parse_codes, request, answer)

    def freeze_frame(self, ecu: Ecu, pid: int) -> m.FreezeFrameValue | None:
        """Freeze frame 0's value of ``pid`` (02 02: the code that stored it); None without
        a readable answer."""
        request = m.freeze_frame(pid)
        answer = self.ask(request, ecu).get(ecu)
        return None if answer is None else self._parsed(m.parse_freeze_frame, request, answer)

    def values(self, ecu: Ecu, pids: tuple[int, ...]) -> dict[int, float]:
        """Decoded values; raises NegativeAnswer (the poller backs off) and ObdError for silence."""
        request = m.current_data(pids)
        answer = self.ask(request, ecu).get(ecu)
        if answer is None:
            raise ObdError(f"no answer from {ecu.name}")
        try:
            return m.current_values(request, answer)
        except NegativeAnswer:
            self.counters["negative"] += 1
            raise
        except ObdError:
            self.counters["bad_answers"] += 1
            raise

    def _parsed(self, parse: Callable[..., T], *args: Any) -> T | None:
        try:
            return parse(*args)
        except NegativeAnswer as exc:
            self.counters["negative"] += 1
            log.debug("%s", exc)
        except ObdError as exc:
            self.counters["bad_answers"] += 1
            log.debug("bad OBD answer: %s", exc)
        return None

    def scan(self) -> Scan:
        """ECUs, VIN, names, supported PIDs and codes: what ``obd scan`` prints."""
        ecus = self.discover()
        if not ecus:
            return Scan(None, (), ("no ECU answered a functional 01 00",))
        vin = self.vin()
        found = []
        for ecu in ecus:
            found.append(
                EcuScan(
                    ecu,
                    self.ecu_name(ecu),
                    self.supported_pids(ecu),
                    tuple(self.codes(ecu, m.STORED_CODES) or ()),
                    tuple(self.codes(ecu, m.PENDING_CODES) or ()),
                    tuple(self.codes(ecu, m.PERMANENT_CODES) or ()),
                )
            )
        return Scan(vin, tuple(found))
