"""Recorded OBD-II sessions: written as candump logs, read back offline (issue 16).

A session is the CAN frames of the tester's requests and the ECUs' answers (and the car's own
traffic), as ``candump -l`` writes them: ``(1436509052.249713) can0 7E8#0641...``. The agent
writes one with ``obd scan --record FILE`` (``CandumpRecorder``, bounded in size); candump on a
real car writes the same. Read back:

- ``messages``: the frames reassembled into ISO-TP messages (requests and answers), by a small
  passive ISO-TP reader (single, first and consecutive frames; flow control only noted).
  Sequence gaps, oversized or truncated messages are counted and dropped, never raised.
- ``SessionDecoder``: the answers turned into the same ``Sample`` values the live poller puts
  on the inbox (PID values, engine running, fault-code changes, freeze frames), on the
  recording's clock: ``replay --obd LOG`` feeds them to the monitors, with no bus.
- ``RecordedLink``: a ``Link`` that answers each request with what the log recorded for it,
  so ``obd scan --log FILE`` runs the same client (and its guards) offline.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from agent.errors import NegativeAnswer, ObdError
from agent.model import Frame, Sample
from agent.obd import messages as m
from agent.obd.addressing import Addressing, Ecu
from agent.obd.faults import FaultChange, FaultDiffer, decode_dtc, parse_codes
from agent.obd.link import Answer
from agent.obd.names import (
    DTC_CONFIRMED_COUNT,
    DTC_NEW,
    DTC_PENDING_COUNT,
    FREEZE_CODE,
    FREEZE_KEYS,
    NO_CODE,
    freeze_name,
)
from agent.obd.pids import BITMAP_PIDS, ENGINE_RUNNING, PIDS

log = logging.getLogger(__name__)
MAX_RECORD_BYTES = 64 * 1024 * 1024  # a recording stops growing here (counted, not an error)
MAX_MESSAGE = 4095  # classic CAN ISO-TP


# -- writing ------------------------------------------------------------------------------------


class CandumpRecorder:
    """Frames as ``candump -l`` lines; stops writing at ``max_bytes`` (``counters["dropped"]``)."""

    def __init__(
        self,
        path: Path,
        channel: str,
        max_bytes: int = MAX_RECORD_BYTES,
        *,
        append: bool = False,
    ) -> None:
        """``append``: the agent's recording goes on across restarts (its size counts)."""
        try:
            self._file: TextIO = path.open("a" if append else "w", encoding="ascii")
            self.written = self._file.tell()
        except OSError as exc:
            raise ObdError(f"cannot write the recording {path}: {exc}") from exc
        self.channel = "".join(c for c in channel if c.isalnum() or c in "-_.") or "can0"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the poller writes, the main loop flushes (status)
        self.counters = {"frames": 0, "dropped": 0}

    def write(self, timestamp: float, arbitration_id: int, extended: bool, data: bytes) -> None:
        ident = f"{arbitration_id:08X}" if extended else f"{arbitration_id:03X}"
        line = f"({timestamp:.6f}) {self.channel} {ident}#{data.hex().upper()}\n"
        if self.written + len(line) > self.max_bytes:
            self.counters["dropped"] += 1
            return
        try:
            with self._lock:
                self._file.write(line)
        except (OSError, ValueError):  # a full disk, or closed by a stop meanwhile
            self.counters["dropped"] += 1
            return
        self.written += len(line)
        self.counters["frames"] += 1

    def tap(self, arbitration_id: int, extended: bool, data: bytes, at: float | None) -> None:
        """For ``IsoTpMux(tap=...)``: a frame sent (``at`` None: now) or received."""
        self.write(time.time() if at is None else at, arbitration_id, extended, data)

    def flush(self) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):  # a failed write is counted
            self._file.flush()

    def close(self) -> None:
        try:
            with self._lock:
                self._file.close()
        except OSError as exc:
            log.warning("recording not closed cleanly: %s", exc)


# -- ISO-TP messages out of frames ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled ISO-TP message: a request (``ecu`` None: functional) or an answer."""

    timestamp: float  # its last frame's
    answer: bool
    ecu: Ecu | None
    payload: bytes


@dataclass
class _Partial:
    size: int
    data: bytearray
    index: int  # sequence number expected next (1..15, 0...)


@dataclass
class MessageReader:
    """A passive ISO-TP reader for the diagnostic ids of ``addressing``; the car's own frames
    and flow control are counted, broken sequences dropped and counted."""

    addressing: Addressing
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "frames": 0,
            "organic": 0,
            "flow_control": 0,
            "messages": 0,
            "broken": 0,
            "other_ids": 0,
        }
    )
    _partial: dict[int, _Partial] = field(default_factory=dict)

    def _who(self, frame: Frame) -> tuple[bool, Ecu | None] | None:
        """(is an answer, the ECU or None for functional), or None for a frame that is no
        OBD-II request or answer."""
        addressing = self.addressing
        if frame.is_extended != addressing.extended:
            return None
        if frame.arbitration_id == addressing.functional_id:
            return False, None
        ecu = addressing.ecu_for_answer(frame.arbitration_id)
        if ecu is not None:
            return True, ecu
        for candidate in self._asked_ids(frame.arbitration_id):
            return False, candidate
        return None

    def _asked_ids(self, arbitration_id: int) -> Iterator[Ecu]:
        """The ECU asked at ``arbitration_id`` (physical requests)."""
        if not self.addressing.extended:
            if 0x7E0 <= arbitration_id <= 0x7E7:
                yield Ecu(arbitration_id + 8, arbitration_id, False)
        elif arbitration_id & 0x1FFF00FF == 0x18DA00F1:
            ecu = arbitration_id >> 8 & 0xFF
            yield Ecu(0x18DAF100 | ecu, arbitration_id, True)

    def feed(self, frame: Frame) -> Message | None:
        self.counters["frames"] += 1
        who = self._who(frame)
        if who is None:
            if self.addressing.is_diagnostic(frame.arbitration_id, frame.is_extended):
                self.counters["other_ids"] += 1
            else:
                self.counters["organic"] += 1
            return None
        data = frame.data
        if not data:
            self.counters["broken"] += 1
            return None
        kind, key = data[0] >> 4, frame.arbitration_id
        if kind == 0:  # single frame
            size = data[0] & 0x0F
            if not 1 <= size <= len(data) - 1:
                self.counters["broken"] += 1
                return None
            self._partial.pop(key, None)
            return self._done(frame, who, bytes(data[1 : 1 + size]))
        if kind == 1:  # first frame
            size = (data[0] & 0x0F) << 8 | data[1] if len(data) >= 2 else 0
            if not 8 <= size <= MAX_MESSAGE or len(data) < 3:
                self.counters["broken"] += 1
                return None
            self._partial[key] = _Partial(size, bytearray(data[2:]), 1)
            return None
        if kind == 2:  # consecutive frame
            partial = self._partial.get(key)
            if partial is None or data[0] & 0x0F != partial.index:
                self._partial.pop(key, None)
                self.counters["broken"] += 1
                return None
            partial.data += data[1:]
            partial.index = (partial.index + 1) % 16
            if len(partial.data) >= partial.size:
                del self._partial[key]
                return self._done(frame, who, bytes(partial.data[: partial.size]))
            return None
        if kind == 3:
            self.counters["flow_control"] += 1
            return None
        self.counters["broken"] += 1
        return None

    def _done(self, frame: Frame, who: tuple[bool, Ecu | None], payload: bytes) -> Message:
        self.counters["messages"] += 1
        return Message(frame.timestamp, who[0], who[1], payload)


def messages(frames: Iterable[Frame], reader: MessageReader) -> Iterator[Message]:
    for frame in frames:
        found = reader.feed(frame)
        if found is not None:
            yield found


def guess_addressing(frames: Iterable[Frame]) -> Addressing:
    """29-bit when the log holds a 29-bit diagnostic frame before any 11-bit one."""
    for frame in frames:
        if Addressing(frame.is_extended).is_diagnostic(frame.arbitration_id, frame.is_extended):
            return Addressing(frame.is_extended)
    return Addressing(False)


# -- answers into samples -----------------------------------------------------------------------


@dataclass
class SessionDecoder:
    """A recorded session's answers as the poller's samples, on the recording's clock.

    Each answer is paired with the request it answers (the latest to its ECU or to all); the
    fault codes of an ECU are diffed when its 07 answer follows a 03, as the poller reads them;
    the freeze frames read right after are emitted before ``obd.dtc.new`` changes, as live."""

    max_age: float | None = 15.2  # the poller's default: 3 pid_periods + timeout
    counters: dict[str, int] = field(
        default_factory=lambda: {
            "answers": 0,
            "samples": 0,
            "unpaired": 0,
            "negative": 0,
            "bad_answers": 0,
        }
    )
    differ: FaultDiffer = field(default_factory=FaultDiffer)
    _asked: dict[Ecu | None, tuple[float, bytes]] = field(default_factory=dict)
    _confirmed: dict[Ecu, list[str]] = field(default_factory=dict)
    _held: list[Sample] = field(default_factory=list)  # fault samples waiting for freeze frames
    _faults_read: bool = False

    def feed(self, message: Message) -> list[Sample]:
        out: list[Sample] = []
        service = message.payload[0] if message.payload else None
        freeze = service in (m.FREEZE_FRAME, m.FREEZE_FRAME + 0x40) or (
            service == m.NEGATIVE and message.payload[1:2] == bytes([m.FREEZE_FRAME])
        )
        if self._held and not freeze:
            out += self._held
            self._held = []
        if not message.answer:
            self._asked[message.ecu] = (message.timestamp, message.payload)
            return out
        self.counters["answers"] += 1
        assert message.ecu is not None
        request = self._request_for(message)
        if request is None:
            self.counters["unpaired"] += 1
            return out
        try:
            out += self._decode(message, request)
        except NegativeAnswer:
            self.counters["negative"] += 1
        except ObdError as exc:
            self.counters["bad_answers"] += 1
            log.debug("recorded OBD answer skipped: %s", exc)
        self.counters["samples"] += len(out)
        return out

    def finish(self) -> list[Sample]:
        """Fault samples still held at the end of the recording."""
        held, self._held = self._held, []
        self.counters["samples"] += len(held)
        return held

    def _request_for(self, message: Message) -> bytes | None:
        physical = self._asked.get(message.ecu)
        functional = self._asked.get(None)
        found = [r for r in (physical, functional) if r is not None]
        for _, request in sorted(found, key=lambda r: -r[0]):
            if m.answers_request(request, message.payload):
                return request
        return None

    def _decode(self, message: Message, request: bytes) -> list[Sample]:
        at, ecu, answer = message.timestamp, message.ecu, message.payload
        assert ecu is not None
        service = request[0]
        if service == m.CURRENT_DATA and not set(request[1:]) & set(BITMAP_PIDS):
            return self._values(request, answer, at)
        if service == m.STORED_CODES:
            self._confirmed[ecu] = parse_codes(request, answer)
        elif service == m.PENDING_CODES:
            pending = parse_codes(request, answer)
            confirmed = self._confirmed.pop(ecu, None)
            if confirmed is not None:
                had = bool(self.differ.confirmed())
                changes = self.differ.update(ecu.name, confirmed, pending)
                self._held += self._faults(changes, had, at)
        elif service == m.FREEZE_FRAME:
            found = m.parse_freeze_frame(request, answer)
            if found.pid == 0x02 and len(found.raw) >= 2:
                return [Sample(FREEZE_CODE, decode_dtc(found.raw[0], found.raw[1]), at)]
            if found.pid in FREEZE_KEYS and found.value is not None:
                return [Sample(freeze_name(found.pid), found.value, at)]
        return []

    def _values(self, request: bytes, answer: bytes, at: float) -> list[Sample]:
        out = []
        for pid, value in m.current_values(request, answer).items():
            out.append(Sample(PIDS[pid].data_name, value, at, self.max_age))
            if pid == 0x0C:
                out.append(Sample(ENGINE_RUNNING, value > 0, at, self.max_age))
        return out

    def _faults(self, changes: list[FaultChange], had: bool, at: float) -> list[Sample]:
        """The poller's ``_emit_faults``, as values."""
        out = []
        if not self._faults_read:
            self._faults_read = True
            present = [c.code for c in changes if c.change == "present"]
            out.append(Sample(DTC_NEW, present[-1] if present else NO_CODE, at))
        out += [Sample(DTC_NEW, c.code, at) for c in changes if c.change == "confirmed"]
        if had and not self.differ.confirmed():
            out.append(Sample(DTC_NEW, NO_CODE, at))
        out.append(Sample(DTC_CONFIRMED_COUNT, len(self.differ.confirmed()), at))
        out.append(Sample(DTC_PENDING_COUNT, len(self.differ.pending()), at))
        return out


def samples(frames: Iterable[Frame], addressing: Addressing, decoder: SessionDecoder,
            reader: MessageReader | None = None) -> Iterator[Sample]:  # fmt: skip
    """Every sample a recorded session gives, in the recording's order."""
    reader = reader if reader is not None else MessageReader(addressing)
    for message in messages(frames, reader):
        yield from decoder.feed(message)
    yield from decoder.finish()


# -- a link answering from the log ------------------------------------------------------------


class RecordedLink:
    """A ``Link`` whose answers are the log's: each request gets the answers the log recorded
    after the same request (the latest exchange wins: the car's last known state). Time is its
    own: waiting advances a virtual clock, so a scan runs offline at once."""

    def __init__(self, recorded: Iterable[Message]) -> None:
        self.now = 0.0
        self.last_organic: float | None = 0.0
        self._answers: dict[tuple[Ecu | None, bytes], dict[Ecu, bytes]] = {}
        self._queue: list[Answer] = []
        self.exchanges = 0
        asked: dict[Ecu | None, bytes] = {}
        for message in recorded:
            if not message.answer:
                asked[message.ecu] = message.payload
                self._answers[(message.ecu, message.payload)] = {}
                self.exchanges += 1
                continue
            assert message.ecu is not None
            for target in (message.ecu, None):
                request = asked.get(target)
                if request is not None and m.answers_request(request, message.payload):
                    self._answers[(target, request)][message.ecu] = message.payload
                    break

    def clock(self) -> float:
        return self.now

    def send(self, payload: bytes, ecu: Ecu | None = None) -> None:
        found = self._answers.get((ecu, payload), {})
        self._queue = [Answer(e, p) for e, p in sorted(found.items(), key=_by_answer_id)]

    def receive(self, timeout: float) -> list[Answer]:
        if self._queue:
            found, self._queue = self._queue, []
            return found
        self.now += timeout
        return []

    def listen(self, timeout: float) -> None:
        self.now += timeout

    def close(self) -> None:
        self._queue = []


def _by_answer_id(item: tuple[Ecu, bytes]) -> int:
    return item[0].answer_id
