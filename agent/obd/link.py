"""ISO-TP (ISO 15765-2) over one CAN bus, several peers at once: can-isotp's pure-Python stack.

One reader (the caller's thread) takes every frame from the python-can bus and hands it to the
ISO-TP session of its identifier (``IsoTpMux``); each session is a can-isotp
``TransportLayerLogic`` stepped by hand, so flow control and consecutive frames happen in the
caller's thread and a test can count every frame sent. The tester side (``PythonCanLink``)
opens a session per answering ECU as its first frame arrives; the twin uses the same mux from
the ECU side.

Frames that are not diagnostic (the car's own cyclic traffic) are only noted: their time says
the car is awake (``last_organic``). Library types stop here: callers get ``Answer``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import can
import isotp

from agent.errors import ObdError
from agent.obd.addressing import Addressing, Ecu

log = logging.getLogger(__name__)


def _pause(seconds: float) -> None:
    """can-isotp's ``wait_func``: a timed wait on an event, not ``time.sleep``, whose absolute
    ``clock_nanosleep`` libfaketime turns into EINVAL (the clock-ahead test runs)."""
    threading.Event().wait(seconds)


ISOTP_PARAMS: dict[str, Any] = {
    "wait_func": _pause,
    "stmin": 0,
    "blocksize": 0,
    "tx_padding": 0x00,  # ISO 15765-4: frames of 8 bytes
    "tx_data_min_length": 8,
    "rx_flowcontrol_timeout": 1000,
    "rx_consecutive_frame_timeout": 1000,
    "max_frame_size": 4095,
}
MAX_QUEUED = 256  # frames waiting for one session, at most (a flood is dropped, counted)
MAX_SESSIONS = 64  # answering peers, at most (29-bit ids name up to 256)
SENT_LOG = 10_000  # frames kept in ``sent`` (tests count them)
# sees every frame sent (time None: now) and received (its time): ``obd scan --record``
Tap = Callable[[int, bool, bytes, float | None], None]


@dataclass(frozen=True, slots=True)
class Answer:
    ecu: Ecu
    payload: bytes


@dataclass(frozen=True, slots=True)
class SentFrame:
    at: float  # clock of the link
    arbitration_id: int
    data: bytes


class _Session:
    def __init__(self, rxid: int, txid: int, extended: bool, send: Callable[[Any], None]) -> None:
        mode = (
            isotp.AddressingMode.Normal_29bits if extended else isotp.AddressingMode.Normal_11bits
        )
        self.frames: deque[isotp.CanMessage] = deque()
        self.layer = isotp.TransportLayerLogic(
            rxfn=self._next,
            txfn=send,
            address=isotp.Address(mode, txid=txid, rxid=rxid),
            params=ISOTP_PARAMS,
        )

    def _next(self, _timeout: float) -> isotp.CanMessage | None:
        return self.frames.popleft() if self.frames else None


class IsoTpMux:
    """ISO-TP sessions keyed by the identifier they receive on, over one python-can bus.

    ``route(arbitration_id, extended)`` says which (rx id, tx id) session a frame opens, or None
    for a frame that is not ISO-TP for us (it goes to ``on_other``)."""

    def __init__(
        self,
        bus: can.BusABC,
        route: Callable[[int, bool], tuple[int, int] | None],
        *,
        extended: bool,
        on_other: Callable[[can.Message], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tap: Tap | None = None,
    ) -> None:
        self.bus = bus
        self.tap = tap
        self.route = route
        self.extended = extended
        self.on_other = on_other
        self.clock = clock
        self.sessions: dict[int, _Session] = {}
        self.sent: deque[SentFrame] = deque(maxlen=SENT_LOG)
        self.counters = {"frames_sent": 0, "frames_received": 0, "dropped": 0, "send_errors": 0}

    def session(self, rxid: int, txid: int) -> _Session:
        found = self.sessions.get(rxid)
        if found is None:
            if len(self.sessions) >= MAX_SESSIONS:
                raise ObdError(f"more than {MAX_SESSIONS} ISO-TP peers on one bus")
            found = self.sessions[rxid] = _Session(rxid, txid, self.extended, self._send)
        return found

    def send(self, rxid: int, txid: int, payload: bytes) -> None:
        """Queue ``payload`` to ``txid`` and send what can go now (a single frame, or a first
        frame; consecutive frames follow in ``pump`` as flow control allows)."""
        layer = self.session(rxid, txid).layer
        layer.send(payload)
        layer.process(do_rx=False)

    def _send(self, message: isotp.CanMessage) -> None:
        data = bytes(message.data)
        frame = can.Message(
            arbitration_id=message.arbitration_id,
            data=data,
            is_extended_id=message.is_extended_id,
            is_fd=False,
        )
        try:
            self.bus.send(frame)
        except can.CanError as exc:  # bus off, buffer full: the exchange times out, counted
            self.counters["send_errors"] += 1
            log.debug("ISO-TP frame not sent: %s", exc)
            return
        self.counters["frames_sent"] += 1
        self.sent.append(SentFrame(self.clock(), message.arbitration_id, data))
        if self.tap is not None:
            self.tap(message.arbitration_id, message.is_extended_id, data, None)

    def send_frame(self, arbitration_id: int, data: bytes) -> None:
        """One raw frame (the twin's organic traffic)."""
        self._send(isotp.CanMessage(arbitration_id, len(data), data, self.extended))

    def send_single_frame(self, arbitration_id: int, payload: bytes) -> None:
        """A functional request: always one single frame (J1979 requests are 7 bytes at most)."""
        if not 1 <= len(payload) <= 7:
            raise ObdError("a functional request fits one single frame (1-7 bytes)")
        data = bytes([len(payload)]) + payload
        self._send(isotp.CanMessage(arbitration_id, 8, data.ljust(8, b"\x00"), self.extended))

    def pump(self, timeout: float) -> list[tuple[int, bytes]]:
        """Read frames for up to ``timeout`` seconds (returning early once a message is
        complete and the bus is drained); the completed messages as (rx id, payload)."""
        deadline = self.clock() + timeout
        done: list[tuple[int, bytes]] = []
        while True:
            left = deadline - self.clock()
            try:
                message = self.bus.recv(max(0.0, min(left, 0.005)) if not done else 0.0)
            except (can.CanError, OSError) as exc:  # the interface went down, the adapter left
                raise ObdError(f"CAN bus read failed: {exc}") from exc
            if message is not None:
                self._dispatch(message)
            for rxid, session in self.sessions.items():
                session.layer.process()
                while (payload := session.layer.recv()) is not None:
                    done.append((rxid, bytes(payload)))
            if (done and message is None) or self.clock() >= deadline:
                return done

    def _dispatch(self, message: can.Message) -> None:
        if message.is_error_frame or message.is_remote_frame:
            return
        self.counters["frames_received"] += 1
        if self.tap is not None:
            self.tap(message.arbitration_id, message.is_extended_id, bytes(message.data),
                     message.timestamp)  # fmt: skip
        pair = self.route(message.arbitration_id, message.is_extended_id)
        if pair is None:
            if self.on_other is not None:
                self.on_other(message)
            return
        try:
            session = self.session(*pair)
        except ObdError:
            self.counters["dropped"] += 1
            return
        if len(session.frames) >= MAX_QUEUED:
            self.counters["dropped"] += 1
            return
        session.frames.append(
            isotp.CanMessage(
                message.arbitration_id, message.dlc, bytes(message.data), message.is_extended_id
            )
        )


class PythonCanLink:
    """The tester's side of OBD-II over a python-can bus (``slcan``, ``virtual``, ``socketcan``)."""

    def __init__(
        self,
        bus: can.BusABC,
        addressing: Addressing,
        *,
        clock: Callable[[], float] = time.monotonic,
        tap: Tap | None = None,
    ) -> None:
        self.addressing = addressing
        self.clock = clock
        self.last_organic: float | None = None  # clock time of the car's own last frame
        self.mux = IsoTpMux(
            bus,
            self._route,
            extended=addressing.extended,
            on_other=self._other,
            clock=clock,
            tap=tap,
        )

    def _route(self, arbitration_id: int, extended: bool) -> tuple[int, int] | None:
        if extended != self.addressing.extended:
            return None
        ecu = self.addressing.ecu_for_answer(arbitration_id)
        return None if ecu is None else (ecu.answer_id, ecu.request_id)

    def _other(self, message: can.Message) -> None:
        if not self.addressing.is_diagnostic(message.arbitration_id, message.is_extended_id):
            self.last_organic = self.clock()

    @property
    def sent(self) -> deque[SentFrame]:
        return self.mux.sent

    def send(self, payload: bytes, ecu: Ecu | None = None) -> None:
        """To one ECU, or functionally (every ECU) when ``ecu`` is None."""
        if ecu is None:
            self.mux.send_single_frame(self.addressing.functional_id, payload)
        else:
            self.mux.send(ecu.answer_id, ecu.request_id, payload)

    def receive(self, timeout: float) -> list[Answer]:
        found = []
        for rxid, payload in self.mux.pump(timeout):
            ecu = self.addressing.ecu_for_answer(rxid)
            if ecu is not None:
                found.append(Answer(ecu, payload))
        return found

    def listen(self, timeout: float) -> None:
        """Only watch the bus (for organic traffic) without sending anything."""
        self.mux.pump(timeout)

    def close(self) -> None:
        self.mux.bus.shutdown()
