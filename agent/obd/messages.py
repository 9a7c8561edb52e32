"""OBD-II requests and answers (SAE J1979 / ISO 15031-5): bytes in, values out, guarded.

Every answer comes from a car: it may be short, odd, or from another service. Parsers raise
``ObdError`` (or ``NegativeAnswer`` for a 0x7F answer) instead of an IndexError, and callers
count and skip them. A positive answer's service byte is the request's plus 0x40.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.errors import NegativeAnswer, ObdError
from agent.obd.pids import BITMAP_PIDS, MAX_PIDS_PER_REQUEST, decode, pid_size

CURRENT_DATA = 0x01
FREEZE_FRAME = 0x02
STORED_CODES = 0x03
CLEAR_CODES = 0x04  # only ever sent by an explicit, authorised command
PENDING_CODES = 0x07
VEHICLE_INFO = 0x09
PERMANENT_CODES = 0x0A
VIN_INFOTYPE = 0x02
ECU_NAME_INFOTYPE = 0x0A
NEGATIVE = 0x7F
# Negative response codes (ISO 14229-1 numbering, used by J1979 over ISO 15765-4)
BUSY_REPEAT = 0x21
OUT_OF_RANGE = 0x31
RESPONSE_PENDING = 0x78
MAX_ANSWER = 4095  # an ISO-TP (classic CAN) message is at most this long


# -- requests ---------------------------------------------------------------------------------


def current_data(pids: Sequence[int]) -> bytes:
    """Service 01 asking 1 to 6 PIDs at once."""
    if not 1 <= len(pids) <= MAX_PIDS_PER_REQUEST:
        raise ValueError(f"a request names 1 to {MAX_PIDS_PER_REQUEST} PIDs, not {len(pids)}")
    if any(not 0 <= p <= 0xFF for p in pids):
        raise ValueError("a PID is one byte")
    return bytes([CURRENT_DATA, *pids])


def freeze_frame(pid: int, frame: int = 0) -> bytes:
    return bytes([FREEZE_FRAME, pid, frame])


def codes_request(service: int) -> bytes:
    if service not in (STORED_CODES, PENDING_CODES, PERMANENT_CODES):
        raise ValueError(f"service {service:02X} does not read fault codes")
    return bytes([service])


def vehicle_info(infotype: int) -> bytes:
    return bytes([VEHICLE_INFO, infotype])


def batches(pids: Iterable[int]) -> list[tuple[int, ...]]:
    """PIDs grouped for requests: at most 6 per request, sorted, without duplicates."""
    ordered = sorted(set(pids))
    size = MAX_PIDS_PER_REQUEST
    return [tuple(ordered[i : i + size]) for i in range(0, len(ordered), size)]


# -- answers ----------------------------------------------------------------------------------


def check_answer(request: bytes, answer: bytes) -> bytes:
    """The answer's body after its service byte; NegativeAnswer for 0x7F, ObdError for an answer
    to another service, an empty or an oversized one."""
    if not answer:
        raise ObdError("empty answer")
    if len(answer) > MAX_ANSWER:
        raise ObdError(f"answer of {len(answer)} bytes is longer than ISO-TP allows")
    service = request[0]
    if answer[0] == NEGATIVE:
        if len(answer) < 3:
            raise ObdError("negative answer shorter than 3 bytes")
        if answer[1] != service:
            raise ObdError(f"negative answer for service {answer[1]:02X}, asked {service:02X}")
        raise NegativeAnswer(answer[1], answer[2])
    if answer[0] != service + 0x40:
        raise ObdError(f"answer to service {answer[0] - 0x40:02X}, asked {service:02X}")
    return answer[1:]


def answers_request(request: bytes, answer: bytes) -> bool:
    """Whether ``answer`` can be the answer to ``request`` (its service, and for 01/02/09 its
    first PID or infotype): an answer to an earlier request that came late is not."""
    if len(answer) >= 2 and answer[0] == NEGATIVE:
        return answer[1] == request[0]
    if not answer or answer[0] != request[0] + 0x40:
        return False
    if request[0] in (CURRENT_DATA, FREEZE_FRAME, VEHICLE_INFO) and len(request) > 1:
        return len(answer) > 1 and answer[1] == request[1]
    return True


def split_current_data(request: bytes, answer: bytes) -> dict[int, bytes]:
    """A service 01 answer as ``{pid: data bytes}``; only PIDs asked; an unknown size or a
    truncated PID ends the reading (what came before it is kept)."""
    body = check_answer(request, answer)
    asked = set(request[1:])
    found: dict[int, bytes] = {}
    at = 0
    while at < len(body):
        pid = body[at]
        size = pid_size(pid)
        if pid not in asked or size is None or at + 1 + size > len(body):
            if not found:
                raise ObdError(f"service 01 answer does not carry the PIDs asked: {body.hex()}")
            break
        found[pid] = body[at + 1 : at + 1 + size]
        at += 1 + size
    if not found:
        raise ObdError("service 01 answer without any PID")
    return found


def current_values(request: bytes, answer: bytes) -> dict[int, float]:
    """Decoded values of the table's PIDs in a service 01 answer."""
    values = {}
    for pid, data in split_current_data(request, answer).items():
        value = decode(pid, data)
        if value is not None:
            values[pid] = value
    return values


def bitmap_pids(base: int, data: bytes) -> set[int]:
    """PIDs a "supported PIDs" bitmap marks (bit 7 of A is PID base+1)."""
    if base not in BITMAP_PIDS or len(data) != 4:
        raise ObdError(f"bad supported-PID bitmap for {base:02X}: {data.hex()}")
    bits = int.from_bytes(data, "big")
    return {base + 1 + i for i in range(32) if bits & (1 << (31 - i))}


def vehicle_info_payload(request: bytes, answer: bytes) -> bytes:
    """Service 09: the data after the infotype and the item count."""
    body = check_answer(request, answer)
    if len(body) < 2 or body[0] != request[1]:
        raise ObdError(f"service 09 answer for another infotype: {body[:1].hex()}")
    return body[2:]  # skip infotype and NODI (number of data items)


def parse_vin(request: bytes, answer: bytes) -> str:
    """The 17-character VIN of 09 02 (some ECUs pad it with zero bytes in front)."""
    data = vehicle_info_payload(request, answer).lstrip(b"\x00")
    text = data.decode("ascii", errors="replace").strip()
    if len(text) != 17 or not text.isalnum():
        raise ObdError(f"VIN answer is not 17 letters and digits: {text!r}")
    return text.upper()


def parse_ecu_name(request: bytes, answer: bytes) -> str:
    """09 0A: ``ECM-EngineControl`` (20 bytes, zero padded)."""
    data = vehicle_info_payload(request, answer).rstrip(b"\x00")
    return "".join(c if c.isprintable() else "?" for c in data.decode("ascii", errors="replace"))


@dataclass(frozen=True, slots=True)
class FreezeFrameValue:
    pid: int
    frame: int
    value: float | None  # None for a PID this table does not decode
    raw: bytes


def parse_freeze_frame(request: bytes, answer: bytes) -> FreezeFrameValue:
    """02 <pid> <frame> -> 42 <pid> <frame> <data>; freeze frame PID 02 is the code that caused
    it (two bytes, decoded with ``faults.decode_dtc``)."""
    body = check_answer(request, answer)
    if len(body) < 3 or body[0] != request[1]:
        raise ObdError(f"freeze frame answer for another PID: {body.hex()}")
    data = body[2:]
    return FreezeFrameValue(body[0], body[1], decode(body[0], data), bytes(data))
