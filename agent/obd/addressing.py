"""CAN identifiers of OBD-II on CAN (ISO 15765-4).

11-bit: functional requests to 0x7DF; ECUs answer from 0x7E8-0x7EF and are asked physically
at their answer id - 8 (flow control goes there too). 29-bit: functional 0x18DB33F1; ECU ``xx``
answers from 0x18DAF1xx and is asked at 0x18DAxxF1 (0xF1 is the external test equipment).
"""

from __future__ import annotations

from dataclasses import dataclass

FUNCTIONAL_11 = 0x7DF
FUNCTIONAL_29 = 0x18DB33F1
TESTER = 0xF1


@dataclass(frozen=True, slots=True)
class Ecu:
    """One ECU: the id it answers from and the id it is asked at."""

    answer_id: int
    request_id: int
    extended: bool

    @property
    def name(self) -> str:
        return f"{self.answer_id:08X}" if self.extended else f"{self.answer_id:03X}"


@dataclass(frozen=True, slots=True)
class Addressing:
    extended: bool  # True: 29-bit

    @property
    def functional_id(self) -> int:
        return FUNCTIONAL_29 if self.extended else FUNCTIONAL_11

    def ecu_for_answer(self, arbitration_id: int) -> Ecu | None:
        """The ECU answering from this id, or None when the id is no OBD answer."""
        if not self.extended:
            if 0x7E8 <= arbitration_id <= 0x7EF:
                return Ecu(arbitration_id, arbitration_id - 8, False)
            return None
        if arbitration_id & 0x1FFFFF00 == 0x18DAF100:
            ecu = arbitration_id & 0xFF
            return Ecu(arbitration_id, 0x18DA00F1 | ecu << 8, True)
        return None

    def is_diagnostic(self, arbitration_id: int, extended: bool) -> bool:
        """A frame of a diagnostic exchange (requests, answers, flow control), not the car's own
        cyclic traffic: these never count as "the car is awake"."""
        if not extended:
            return 0x7DF <= arbitration_id <= 0x7EF
        return arbitration_id >> 16 in (0x18DA, 0x18DB)


def parse_addressing(text: str) -> Addressing:
    if text in ("11", "11bit", "11-bit"):
        return Addressing(False)
    if text in ("29", "29bit", "29-bit"):
        return Addressing(True)
    raise ValueError(f"addressing is 11 or 29, not {text!r}")
