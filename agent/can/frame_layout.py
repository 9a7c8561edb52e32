"""Where a frame's bits go: masks, signal placements and the decode plan of each message.

Built once per :meth:`agent.can.decode.Decoder.use`; the decoder's hot path only reads it.
Payloads are compared and signals extracted as Python ints: ``int.from_bytes(data, "little")``
holds Intel signals as contiguous bit ranges, ``int.from_bytes(data, "big")`` Motorola ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cantools.database.can import Message, Signal

from agent.can.dbc import Binding
from agent.model import SignalKind, Value
from agent.state import SignalState

_ROLLING_WORDS = ("counter", "checksum", "chksum", "crc", "alive", "zaehler", "rolling")
_ROLLING_TOKENS = frozenset({"cnt", "ctr", "chk", "cs", "cks", "bz"})


def is_rolling_name(name: str) -> bool:
    """True for names of rolling counters and checksums (``*_Counter``, ``CRC``, ``CHKSUM``...)."""
    lowered = name.lower()
    if any(word in lowered for word in _ROLLING_WORDS):
        return True
    return any(token in _ROLLING_TOKENS for token in lowered.split("_"))


def signal_bits(signal: Signal) -> int:
    """The signal's bits in ``int.from_bytes(payload, "little")``, as a mask."""
    if signal.byte_order == "little_endian":
        return ((1 << signal.length) - 1) << signal.start
    mask = 0
    position = signal.start  # Motorola: DBC start bit is the MSB; walk towards the LSB
    for _ in range(signal.length):
        mask |= 1 << position
        position = position + 15 if position % 8 == 0 else position - 1
    return mask


@dataclass(slots=True)
class DataOut:
    """A data name fed from a signal, with its transform."""

    name: str
    kind: SignalKind
    scale: float
    offset: float
    values: dict[int, Value]
    choices: dict[int, str]

    def convert(self, raw: Any, scaled: Value) -> Value | None:
        """The data value, or None when the raw value has no mapping (SNA, reserved)."""
        if self.values:
            return self.values.get(raw)
        if self.kind is SignalKind.BOOLEAN:
            return scaled != 0
        if self.kind is SignalKind.ENUM:
            return self.choices.get(raw)
        if self.scale != 1.0 or self.offset != 0.0:
            return float(scaled) * self.scale + self.offset
        return scaled


@dataclass(slots=True)
class Output:
    """One used signal of a message: its ``Message.Signal`` key and the data names it feeds."""

    key: str
    signal: str
    to_scaled: Callable[[Any, bool], Any]  # signal.conversion.raw_to_scaled
    choices: dict[int, str]
    max_age: float | None
    data: list[DataOut]
    # Direct extraction: raw = (payload int >> shift) & width, where the payload int is
    # little-endian for Intel signals and big-endian for Motorola ones (contiguous in each).
    big_endian: bool = False
    shift: int = 0
    width: int = 0
    sign_bit: int = 0  # 1 << (length - 1) for signed signals, else 0


@dataclass(slots=True)
class Page:
    """The last decoded payload of one message page, and the state cells it updated."""

    masked: int
    cells: list[SignalState]


@dataclass(slots=True)
class Route:
    """A message with signals in use, and the memory of its last payload."""

    message: Message
    length: int
    mask: int  # payload bits that can change a used value (rolling bits cleared)
    mux_mask: int  # bits of the multiplexer selectors: the page key (0: not multiplexed)
    outputs: list[Output]
    direct: bool = False  # raw values taken from the payload int, not via cantools
    has_big_endian: bool = False
    last: int = -1  # masked payload of the last decoded frame (plain messages)
    cells: list[SignalState] = field(default_factory=list)  # state cells it updated
    pages: dict[int, Page] = field(default_factory=dict)  # the same, per multiplexer page

    def page_cells(self, payload: int, masked: int) -> list[SignalState] | None:
        """The cells of this payload's multiplexer page when the page is unchanged, else None."""
        page = self.pages.get(payload & self.mux_mask)
        return page.cells if page is not None and page.masked == masked else None

    def forget(self) -> None:
        self.last, self.cells = -1, []
        self.pages.clear()


# Table entry of a known id that carries no signal in use.
UNUSED = Route(Message(0, "unused", 0, []), 0, 0, 0, [])


def data_output(binding: Binding, choices: dict[int, str]) -> DataOut:
    return DataOut(
        binding.name,
        binding.kind,
        binding.scale,
        binding.offset,
        dict(binding.values),
        choices,
    )


def plan_route(message: Message, outputs: list[Output], rolling: set[str]) -> Route:
    """Precompute the message's masks: drop rolling bits, except those of signals in use.

    A bit shared by a rolling signal and any other signal (overlapping or on another
    multiplexer page) stays in the mask.
    """
    used = {output.signal for output in outputs}
    rolling_bits = keep_bits = mux_mask = 0
    for signal in message.signals:
        bits = signal_bits(signal)
        if signal.is_multiplexer:
            mux_mask |= bits
            keep_bits |= bits
        elif signal.name not in used and (
            is_rolling_name(signal.name)
            or signal.name in rolling
            or f"{message.name}.{signal.name}" in rolling
        ):
            rolling_bits |= bits
        else:
            keep_bits |= bits
    full = (1 << (8 * message.length)) - 1
    mask = full & ~(rolling_bits & ~keep_bits)
    route = Route(message, message.length, mask, mux_mask, outputs)
    # Our own extraction when cantools would do nothing more: no multiplexing, integer
    # signals, every signal inside the payload (else cantools refuses the frame: so do we).
    # Overlapping signals (two readings of the same bits, seen in production DBCs) are
    # extracted each on its own, where cantools' decoder gives up on the whole frame.
    placed = {s.name: placement(s, message.length) for s in message.signals}
    if not mux_mask and all(p is not None for p in placed.values()):
        route.direct = True
        for output in outputs:
            where = placed[output.signal]
            assert where is not None
            output.big_endian, output.shift, output.width, output.sign_bit = where
        route.has_big_endian = any(o.big_endian for o in outputs)
    return route


def placement(signal: Signal, length: int) -> tuple[bool, int, int, int] | None:
    """(big endian, shift, width mask, sign bit) of an integer signal inside ``length`` bytes."""
    if signal.is_float:
        return None
    width = (1 << signal.length) - 1
    sign_bit = 1 << (signal.length - 1) if signal.is_signed else 0
    if signal.byte_order == "little_endian":
        if signal.start + signal.length > 8 * length:
            return None
        return False, signal.start, width, sign_bit
    byte, bit = divmod(signal.start, 8)
    lsb = (length - 1 - byte) * 8 + bit - signal.length + 1
    if byte >= length or lsb < 0:
        return None
    return True, lsb, width, sign_bit
