"""Fault codes (DTCs): the two-byte J1979 encoding to ``P0301``, and successive reads diffed into
events instead of lists.

Encoding (SAE J2012 / J1979): the top two bits of the first byte are the system (P powertrain,
C chassis, B body, U network), the next two the first digit (0-3), then three hex digits.
Over CAN, a 03/07/0A answer is ``43 <count> <dtc hi> <dtc lo> ...``; 0x0000 is padding.

The differ keeps, per ECU, the confirmed (03) and pending (07) sets of the previous read. The
first read of an ECU is the baseline: its codes are reported ``present``, not ``new``, so an
agent restart does not announce every old code again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.errors import ObdError
from agent.obd.messages import check_answer

_SYSTEMS = "PCBU"
MAX_CODES = 127  # a count byte is at most this in practice; more is a broken answer


def decode_dtc(high: int, low: int) -> str:
    """Two bytes as ``P0301``."""
    return f"{_SYSTEMS[high >> 6]}{(high >> 4) & 0x3}{high & 0xF:X}{low:02X}"


def encode_dtc(code: str) -> bytes:
    """``P0301`` as its two bytes (the twin and tests use it); ValueError for a bad code."""
    if len(code) != 5 or code[0] not in _SYSTEMS or code[1] not in "0123":
        raise ValueError(f"not a fault code: {code!r}")
    rest = int(code[2:], 16)
    high = _SYSTEMS.index(code[0]) << 6 | int(code[1]) << 4 | rest >> 8
    return bytes([high, rest & 0xFF])


def parse_codes(request: bytes, answer: bytes) -> list[str]:
    """The codes of a 03/07/0A answer, in order, without padding or repeats."""
    body = check_answer(request, answer)
    if not body:
        raise ObdError("fault code answer without a count")
    count, pairs = body[0], body[1:]
    if count > MAX_CODES or len(pairs) % 2 or len(pairs) < 2 * count:
        raise ObdError(f"fault code answer says {count} code(s) but carries {len(pairs)} byte(s)")
    codes: list[str] = []
    for i in range(0, 2 * count, 2):
        if pairs[i] == 0 and pairs[i + 1] == 0:
            continue
        code = decode_dtc(pairs[i], pairs[i + 1])
        if code not in codes:
            codes.append(code)
    return codes


@dataclass(frozen=True, slots=True)
class FaultChange:
    """One change of one code on one ECU."""

    ecu: str  # the answering ECU, e.g. "7E8" or "18DAF110"
    code: str
    change: str  # "present" | "pending" | "confirmed" | "cleared"
    was_pending: bool = False  # a confirmed code that was pending at the previous read


@dataclass(slots=True)
class _EcuCodes:
    confirmed: frozenset[str]
    pending: frozenset[str]


@dataclass(slots=True)
class FaultDiffer:
    """Successive reads of each ECU's confirmed and pending codes -> ``FaultChange`` events."""

    _ecus: dict[str, _EcuCodes] = field(default_factory=dict)

    def update(
        self, ecu: str, confirmed: Iterable[str], pending: Iterable[str]
    ) -> list[FaultChange]:
        now = _EcuCodes(frozenset(confirmed), frozenset(pending))
        before = self._ecus.get(ecu)
        self._ecus[ecu] = now
        if before is None:
            return [FaultChange(ecu, c, "present") for c in sorted(now.confirmed)] + [
                FaultChange(ecu, c, "pending") for c in sorted(now.pending - now.confirmed)
            ]
        changes = [
            FaultChange(ecu, c, "confirmed", was_pending=c in before.pending)
            for c in sorted(now.confirmed - before.confirmed)
        ]
        known_before = before.confirmed | before.pending
        changes += [
            FaultChange(ecu, c, "pending")
            for c in sorted(now.pending - known_before - now.confirmed)
        ]
        changes += [
            FaultChange(ecu, c, "cleared")
            for c in sorted(known_before - now.confirmed - now.pending)
        ]
        return changes

    def confirmed(self) -> set[str]:
        return {c for codes in self._ecus.values() for c in codes.confirmed}

    def pending(self) -> set[str]:
        return {c for codes in self._ecus.values() for c in codes.pending}
