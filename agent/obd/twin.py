"""An ECU twin: a car answering OBD-II as real ECUs do, for tests and ``simulate``.

``TwinCar.answer`` is pure (request bytes in, answer bytes out); ``TwinRunner`` puts the car on
a python-can bus through the same ISO-TP mux as the tester (multi-frame VIN with flow control).
Several ECUs, each with its supported PIDs (bitmaps built from its values), fault codes that
appear, confirm and clear, refusals (0x31), "busy" (0x21) and "response pending" (0x78)
answers, and a car that falls asleep: no organic traffic, no answers, and every frame it
receives while asleep counted in ``woken_by`` (a test wants it to stay 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import can

from agent.obd import messages as m
from agent.obd.addressing import Addressing, Ecu
from agent.obd.faults import encode_dtc
from agent.obd.link import IsoTpMux

ORGANIC_ID = 0x0F6  # the twin's own cyclic frame while awake
ORGANIC_PERIOD = 0.1


@dataclass
class TwinEcu:
    address: int  # 0-7 for 11-bit (answer id 0x7E8 + n), the ECU byte for 29-bit
    name: str = "ECM-EngineControl"
    values: dict[int, bytes] = field(default_factory=dict)  # PID -> its data bytes
    vin: str | None = None
    confirmed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)  # PID -> negative response code
    busy: int = 0  # answer the next n requests with 0x21 (busy, repeat)
    slow: int = 0  # answer the next n requests with 0x78 (pending) first
    freeze: dict[int, bytes] = field(default_factory=dict)  # freeze frame 0: PID -> data

    def ecu(self, addressing: Addressing) -> Ecu:
        if addressing.extended:
            found = addressing.ecu_for_answer(0x18DAF100 | self.address)
        else:
            found = addressing.ecu_for_answer(0x7E8 + self.address)
        assert found is not None
        return found

    def supported(self, base: int) -> bytes:
        """The "PIDs supported" bitmap at ``base``: the PIDs it has, plus the next bitmap PID
        when it has any PID beyond."""
        pids = set(self.values)
        bits = 0
        for pid in range(base + 1, base + 0x21):
            if pid in pids or (pid == base + 0x20 and any(p > pid for p in pids)):
                bits |= 1 << (31 - (pid - base - 1))
        return bits.to_bytes(4, "big")


def _bitmap_reachable(ecu: TwinEcu, base: int) -> bool:
    return base == 0 or any(p > base for p in ecu.values)


def _negative(service: int, code: int) -> bytes:
    return bytes([m.NEGATIVE, service, code])


class TwinCar:
    """The ECUs' answers, pure: ``answer(ecu, request)`` is bytes or None (silence)."""

    def __init__(self, ecus: Iterable[TwinEcu], addressing: Addressing) -> None:
        self.ecus = list(ecus)
        self.addressing = addressing
        self.asleep = False
        self.requests: list[tuple[str, bytes]] = []  # (ecu name, request), as received
        self.lock = threading.Lock()

    def by_request_id(self, request_id: int) -> TwinEcu | None:
        for ecu in self.ecus:
            if ecu.ecu(self.addressing).request_id == request_id:
                return ecu
        return None

    def answer(self, ecu: TwinEcu, request: bytes, functional: bool) -> list[bytes]:
        """What ``ecu`` sends back (several answers for busy/pending), empty for silence."""
        with self.lock:
            self.requests.append((ecu.ecu(self.addressing).name, request))
            if not request:
                return []
            if ecu.busy:
                ecu.busy -= 1
                return [_negative(request[0], m.BUSY_REPEAT)]
            body = self._body(ecu, request, functional)
            if body is None:
                return []
            if ecu.slow and body[0] != m.NEGATIVE:
                ecu.slow -= 1
                return [_negative(request[0], m.RESPONSE_PENDING), body]
            return [body]

    def _body(self, ecu: TwinEcu, request: bytes, functional: bool) -> bytes | None:
        service, args = request[0], request[1:]
        if service == m.CURRENT_DATA:
            return self._current(ecu, args, functional)
        if service in (m.STORED_CODES, m.PENDING_CODES, m.PERMANENT_CODES):
            codes = {m.STORED_CODES: ecu.confirmed, m.PENDING_CODES: ecu.pending}.get(
                service, ecu.permanent
            )
            return bytes([service + 0x40, len(codes)]) + b"".join(encode_dtc(c) for c in codes)
        if service == m.VEHICLE_INFO and args[:1] == bytes([m.VIN_INFOTYPE]) and ecu.vin:
            return bytes([0x49, m.VIN_INFOTYPE, 1]) + ecu.vin.encode("ascii")
        if service == m.VEHICLE_INFO and args[:1] == bytes([m.ECU_NAME_INFOTYPE]):
            name = ecu.name.encode("ascii")[:20].ljust(20, b"\x00")
            return bytes([0x49, m.ECU_NAME_INFOTYPE, 1]) + name
        if service == m.FREEZE_FRAME and len(args) == 2 and args[0] in ecu.freeze:
            return bytes([0x42, args[0], args[1]]) + ecu.freeze[args[0]]
        return None if functional else _negative(service, 0x12)

    def _current(self, ecu: TwinEcu, pids: bytes, functional: bool) -> bytes | None:
        parts = b""
        for pid in pids:
            if pid in ecu.refused:
                return None if functional else _negative(m.CURRENT_DATA, ecu.refused[pid])
            if pid % 0x20 == 0 and _bitmap_reachable(ecu, pid):
                parts += bytes([pid]) + ecu.supported(pid)
            elif pid in ecu.values:
                parts += bytes([pid]) + ecu.values[pid]
        if parts:
            return bytes([0x41]) + parts
        return None if functional else _negative(m.CURRENT_DATA, m.OUT_OF_RANGE)


class TwinRunner:
    """The twin on a bus, in its own thread: organic frames while awake, answers to requests."""

    def __init__(self, bus: can.BusABC, car: TwinCar, *, organic: bool = True) -> None:
        self.car = car
        self.organic = organic
        self.woken_by = 0  # frames received while asleep
        self._functional: list[bytes] = []
        self._stop = threading.Event()
        self.mux = IsoTpMux(
            bus, self._route, extended=car.addressing.extended, on_other=self._other
        )
        self._thread = threading.Thread(target=self._run, name="obd-twin", daemon=True)

    def _route(self, arbitration_id: int, extended: bool) -> tuple[int, int] | None:
        if self.car.asleep:
            self.woken_by += 1
            return None
        ecu = (
            self.car.by_request_id(arbitration_id)
            if extended == self.car.addressing.extended
            else None
        )
        if ecu is None:
            return None
        return arbitration_id, ecu.ecu(self.car.addressing).answer_id

    def _other(self, message: can.Message) -> None:
        if self.car.asleep or message.arbitration_id != self.car.addressing.functional_id:
            return
        data = bytes(message.data)
        if data and data[0] >> 4 == 0 and 1 <= data[0] <= 7 and len(data) > data[0]:
            self._functional.append(data[1 : 1 + data[0]])

    def start(self) -> TwinRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3.0)

    def _run(self) -> None:
        next_organic = 0.0
        while not self._stop.is_set():
            done = self.mux.pump(0.01)
            if self.car.asleep:
                self._functional.clear()
                continue
            for request_id, request in done:
                ecu = self.car.by_request_id(request_id)
                if ecu is not None:
                    self._reply(ecu, request, functional=False)
            while self._functional:
                request = self._functional.pop(0)
                for ecu in self.car.ecus:
                    self._reply(ecu, request, functional=True)
            if self.organic and time.monotonic() >= next_organic:
                next_organic = time.monotonic() + ORGANIC_PERIOD
                self.mux.send_frame(ORGANIC_ID, bytes(8))

    def _reply(self, ecu: TwinEcu, request: bytes, *, functional: bool) -> None:
        ident = ecu.ecu(self.car.addressing)
        for answer in self.car.answer(ecu, request, functional):
            # queued; first/single frame out now, the rest as flow control allows in ``_run``
            # (never ``pump`` here: a request completing meanwhile would be dropped)
            self.mux.send(ident.request_id, ident.answer_id, answer)


DEMO_VIN = "VF3DEMO0000000042"
# freeze frame 0 of the demo ECM: P0301 stored it at 83 degC, 750 rpm, standing still
DEMO_FREEZE = {0x02: encode_dtc("P0301"), 0x05: b"\x7b", 0x0C: b"\x0b\xb8", 0x0D: b"\x00"}


def demo_car(addressing: Addressing) -> TwinCar:
    """Two ECUs of a warm car at 50 km/h: the ECM (every PID of the table but the fuel rate,
    the VIN, a pending P0301) and the TCM (coolant, fuel level: asked of the ECM only)."""
    ecm, tcm = (0x10, 0x18) if addressing.extended else (0, 1)
    return TwinCar(
        [
            TwinEcu(
                ecm,
                values={
                    0x04: b"\x40", 0x05: b"\x5a", 0x0C: b"\x1a\xf8", 0x0D: b"\x32",
                    0x0F: b"\x46", 0x10: b"\x01\x90", 0x11: b"\x20", 0x1F: b"\x02\x58",
                    0x2F: b"\x66", 0x31: b"\x00\x64", 0x42: b"\x36\xb0", 0x46: b"\x32",
                    0x5C: b"\x82", 0xA6: b"\x00\x01\xe2\x40",  # no 5E: no fuel rate
                },
                vin=DEMO_VIN,
                pending=["P0301"],
                freeze=DEMO_FREEZE,
            ),
            TwinEcu(tcm, name="TCM-Transmission", values={0x05: b"\x5a", 0x2F: b"\x66"}),
        ],
        addressing,
    )  # fmt: skip
