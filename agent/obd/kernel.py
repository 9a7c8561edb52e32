"""OBD-II through the kernel's ISO-TP sockets (``CAN_ISOTP``, Linux 5.10+, module ``can-isotp``).

The kernel handles flow control and consecutive frames per socket, one socket per ECU (bound
to its request and answer ids). A raw socket (python-can ``socketcan``) sends the functional
single frame, watches the car's own traffic (awake or not) and hears 29-bit ECUs whose address
is not known yet: their single-frame answer is read from it, and a socket is bound for them.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import can
import isotp

from agent.errors import ObdError
from agent.obd.addressing import Addressing, Ecu
from agent.obd.link import Answer

MAX_SOCKETS = 32


class KernelLink:
    def __init__(
        self, channel: str, addressing: Addressing, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        try:
            isotp.tpsock.check_support()
            self.raw = can.Bus(interface="socketcan", channel=channel)
        except (NotImplementedError, OSError, can.CanError) as exc:
            raise ObdError(f"no kernel ISO-TP on {channel}: {exc}") from exc
        self.channel = channel
        self.addressing = addressing
        self.clock = clock
        self.last_organic: float | None = None
        self.frames_sent = 0
        self.reception_errors = 0  # a broken multi-frame reception: that answer is lost
        self._sockets: dict[int, tuple[Ecu, isotp.socket]] = {}
        if not addressing.extended:
            for answer_id in range(0x7E8, 0x7F0):
                ecu = addressing.ecu_for_answer(answer_id)
                assert ecu is not None
                self._bind(ecu)

    def _bind(self, ecu: Ecu) -> None:
        if ecu.answer_id in self._sockets or len(self._sockets) >= MAX_SOCKETS:
            return
        mode = (
            isotp.AddressingMode.Normal_29bits
            if ecu.extended
            else isotp.AddressingMode.Normal_11bits
        )
        sock = isotp.socket()
        try:
            sock.set_opts(txpad=0x00)
            sock.set_fc_opts(stmin=0, bs=0)
            sock.bind(self.channel, isotp.Address(mode, txid=ecu.request_id, rxid=ecu.answer_id))
            sock.settimeout(0.0)
        except OSError as exc:
            sock.close()
            raise ObdError(f"cannot bind an ISO-TP socket on {self.channel}: {exc}") from exc
        self._sockets[ecu.answer_id] = (ecu, sock)

    def send(self, payload: bytes, ecu: Ecu | None = None) -> None:
        try:
            if ecu is None:
                if not 1 <= len(payload) <= 7:
                    raise ObdError("a functional request fits one single frame (1-7 bytes)")
                data = (bytes([len(payload)]) + payload).ljust(8, b"\x00")
                self.raw.send(
                    can.Message(
                        arbitration_id=self.addressing.functional_id,
                        data=data,
                        is_extended_id=self.addressing.extended,
                    )
                )
            else:
                self._bind(ecu)
                if ecu.answer_id not in self._sockets:
                    raise ObdError(f"more than {MAX_SOCKETS} ECUs on {self.channel}")
                self._sockets[ecu.answer_id][1].send(payload)
        except (OSError, can.CanError) as exc:
            raise ObdError(f"send on {self.channel} failed: {exc}") from exc
        self.frames_sent += 1

    def receive(self, timeout: float) -> list[Answer]:
        deadline = self.clock() + timeout
        found: list[Answer] = []
        while True:
            self._drain_raw(found)
            for ecu, sock in list(self._sockets.values()):
                while (payload := self._recv(sock)) is not None:
                    found.append(Answer(ecu, payload))
            left = deadline - self.clock()
            if found or left <= 0:
                return found
            readable = [self.raw.fileno(), *(s.fileno() for _, s in self._sockets.values())]
            try:
                select.select(readable, [], [], min(left, 0.01))
            except (OSError, ValueError) as exc:  # a socket closed under us
                raise ObdError(f"ISO-TP sockets on {self.channel} failed: {exc}") from exc

    def _drain_raw(self, found: list[Answer]) -> None:
        while (message := self._raw_recv(0.0)) is not None:
            self._classify(message, found)

    def _raw_recv(self, timeout: float) -> can.Message | None:
        try:
            return self.raw.recv(timeout)
        except (can.CanError, OSError) as exc:  # the interface went down
            raise ObdError(f"CAN bus read on {self.channel} failed: {exc}") from exc

    def _classify(self, message: can.Message, found: list[Answer]) -> None:
        """The car's own frame (awake), or the single-frame answer of an ECU without a socket
        yet (29-bit: its address is learnt here and a socket bound for it)."""
        ident, extended = message.arbitration_id, message.is_extended_id
        ecu = (
            self.addressing.ecu_for_answer(ident) if extended == self.addressing.extended else None
        )
        if ecu is None:
            if not self.addressing.is_diagnostic(ident, extended):
                self.last_organic = self.clock()
            return
        if ecu.answer_id in self._sockets:
            return  # its socket has it
        data = bytes(message.data)
        if data and data[0] >> 4 == 0 and 1 <= data[0] <= 7 and len(data) > data[0]:
            found.append(Answer(ecu, data[1 : 1 + data[0]]))
        self._bind(ecu)

    def listen(self, timeout: float) -> None:
        deadline = self.clock() + timeout
        while (left := deadline - self.clock()) > 0:
            message = self._raw_recv(min(left, 0.05))
            if message is not None:
                self._classify(message, [])

    def _recv(self, sock: isotp.socket) -> bytes | None:
        try:
            return bytes(sock.recv())
        except (TimeoutError, BlockingIOError):
            return None
        except OSError:  # the kernel reports a timed-out or broken reception: counted, skipped
            self.reception_errors += 1
            return None

    def close(self) -> None:
        for _, sock in self._sockets.values():
            sock.close()
        self.raw.shutdown()
