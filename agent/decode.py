"""Frames in, named values into the vehicle state: the hot path of the agent.

Per frame, cheapest test first: unknown bus or id, id carrying no signal in use, wrong length
(cantools silently accepts longer payloads; a DLC that differs from the DBC is a bad frame here),
payload unchanged since the previous frame of that id (and multiplexer page) once the bits of
rolling counters and checksums are masked out. Only then does cantools decode it. Every skip
counts under its reason in :attr:`Decoder.counters`.

A skipped unchanged frame still proves its signals are alive: it refreshes their timestamps in
the state (directly on the state's ``SignalState`` cells, kept per message page), so staleness
means "no frame", never "no change".

Pure: no clock, no I/O. The state's values are stored under both the ``Message.Signal`` key and
the data name of the map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cantools.database.can import Message, Signal

from agent.dbc import (
    EXTENDED_FLAG,
    Binding,
    SignalRef,
    Vehicle,
    message_key,
    signal_period,
)
from agent.model import Frame, SignalKind, Value
from agent.state import SignalState, VehicleState

log = logging.getLogger(__name__)

_ROLLING_WORDS = ("counter", "checksum", "chksum", "crc", "alive", "zaehler", "rolling")
_ROLLING_TOKENS = frozenset({"cnt", "ctr", "chk", "cs", "cks", "bz"})

COUNTER_NAMES = (
    "frames",
    "decoded",
    "skipped_unknown_bus",
    "skipped_unknown_id",
    "skipped_unused",
    "skipped_bad_length",
    "skipped_unchanged",
    "skipped_decode_error",
    "unmapped_value",
)


def is_rolling_name(name: str) -> bool:
    """True for names of rolling counters and checksums (``*_Counter``, ``CRC``, ``CHKSUM``...)."""
    lowered = name.lower()
    if any(word in lowered for word in _ROLLING_WORDS):
        return True
    return any(token in _ROLLING_TOKENS for token in lowered.split("_"))


def signal_bits(signal: Signal) -> int:
    """The signal's bits in ``int.from_bytes(payload, "little")``, as a mask."""
    mask = 0
    if signal.byte_order == "little_endian":
        return ((1 << signal.length) - 1) << signal.start
    position = signal.start  # Motorola: DBC start bit is the MSB; walk towards the LSB
    for _ in range(signal.length):
        mask |= 1 << position
        position = position + 15 if position % 8 == 0 else position - 1
    return mask


@dataclass(slots=True)
class _DataOut:
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
class _Output:
    """One used signal of a message: its ``Message.Signal`` key and the data names it feeds."""

    key: str
    signal: str
    to_scaled: Callable[[Any, bool], Any]  # signal.conversion.raw_to_scaled
    choices: dict[int, str]
    max_age: float | None
    data: list[_DataOut]


@dataclass(slots=True)
class _Page:
    """The last decoded payload of one message page, and the state cells it updated."""

    masked: int
    cells: list[SignalState]


@dataclass(slots=True)
class _Route:
    message: Message
    length: int
    mask: int  # payload bits that can change a used value (rolling bits cleared)
    mux_mask: int  # bits of the multiplexer selectors: the page key
    outputs: list[_Output]
    pages: dict[int, _Page]


class Decoder:
    """Decode frames of the signals in use into a VehicleState."""

    def __init__(
        self, vehicle: Vehicle, stale_factor: float = 3.0, default_timeout: float = 5.0
    ) -> None:
        self.vehicle = vehicle
        self.stale_factor = stale_factor
        self.default_timeout = default_timeout
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.unresolved: set[str] = set()
        self._routes: dict[str, dict[int, _Route]] = {}
        self._state: VehicleState | None = None
        self.use(())

    # -- configuration -------------------------------------------------------------------------

    def use(self, names: Iterable[str]) -> None:
        """Set the names in use (data names or ``Message.Signal``); others are not decoded."""
        wanted: dict[tuple[str, int], dict[str, _Output]] = {}
        self.unresolved = set()
        for name in names:
            ref = self.vehicle.lookup(name)
            if ref is None:
                self.unresolved.add(name)
                continue
            outputs = wanted.setdefault((ref.bus, message_key(ref.message)), {})
            output = outputs.get(ref.key) or self._output(ref)
            outputs[ref.key] = output
            if ref.binding is not None and all(d.name != name for d in output.data):
                output.data.append(_data_out(ref.binding, output.choices))
        if self.unresolved:
            log.info("names not provided by the CAN buses: %s", ", ".join(sorted(self.unresolved)))
        self._routes = {}
        for bus, bus_db in self.vehicle.buses.items():
            rolling = set(bus_db.spec.rolling_signals)
            table: dict[int, _Route] = {}
            for key, message in bus_db.by_id.items():
                used = list(wanted.get((bus, key), {}).values())
                table[key] = _route(message, used, rolling)
            self._routes[bus] = table
        self._state = None

    def _output(self, ref: SignalRef) -> _Output:
        signal = ref.signal
        period = signal_period(ref.message, signal)
        base = period if period is not None else self.default_timeout
        choices = {int(k): str(v) for k, v in (signal.choices or {}).items()}
        return _Output(
            ref.key,
            signal.name,
            signal.conversion.raw_to_scaled,
            choices,
            base * self.stale_factor,
            [],
        )

    def used_ids(self, bus: str) -> list[tuple[int, bool]]:
        """(arbitration id, extended) of every message carrying a used signal on ``bus``."""
        table = self._routes.get(bus, {})
        found = []
        for key, route in table.items():
            if route.outputs:
                found.append((key & ~EXTENDED_FLAG, bool(key & EXTENDED_FLAG)))
        return sorted(found)

    def can_filters(self, bus: str) -> list[dict[str, int | bool]]:
        """python-can ``can_filters`` for the ids in use on ``bus`` ([] when none is in use)."""
        return [
            {
                "can_id": frame_id,
                "can_mask": 0x1FFF_FFFF if extended else 0x7FF,
                "extended": extended,
            }
            for frame_id, extended in self.used_ids(bus)
        ]

    # -- the hot path --------------------------------------------------------------------------

    def feed(self, frame: Frame, state: VehicleState) -> list[str]:
        """Decode one frame into ``state``; return the names whose value changed."""
        counters = self.counters
        counters["frames"] += 1
        table = self._routes.get(frame.bus)
        if table is None:
            counters["skipped_unknown_bus"] += 1
            return []
        frame_id = frame.arbitration_id
        route = table.get(frame_id | EXTENDED_FLAG if frame.is_extended else frame_id)
        if route is None:
            counters["skipped_unknown_id"] += 1
            return []
        if not route.outputs:
            counters["skipped_unused"] += 1
            return []
        data = frame.data
        if len(data) != route.length:
            counters["skipped_bad_length"] += 1
            return []
        if state is not self._state:
            self._bind(state)
        payload = int.from_bytes(data, "little")
        page_key = payload & route.mux_mask
        masked = payload & route.mask
        page = route.pages.get(page_key)
        if page is not None and page.masked == masked:
            timestamp = frame.timestamp
            for cell in page.cells:
                cell.timestamp = timestamp
            counters["skipped_unchanged"] += 1
            return []
        return self._decode(route, frame, state, page_key, masked)

    def _decode(
        self, route: _Route, frame: Frame, state: VehicleState, page_key: int, masked: int
    ) -> list[str]:
        try:
            raw_values = route.message.decode_simple(frame.data, False, False)
        except Exception:  # cantools: DecodeError, ValueError, struct errors on odd payloads
            self.counters["skipped_decode_error"] += 1
            return []
        self.counters["decoded"] += 1
        timestamp = frame.timestamp
        changed: list[str] = []
        cells: list[SignalState] = []
        update, cell_of = state.update, state.get
        for output in route.outputs:
            raw: Any = raw_values.get(output.signal)
            if raw is None:  # not on this multiplexer page
                continue
            scaled: Value = output.to_scaled(raw, False)
            value = output.choices.get(raw, scaled) if output.choices else scaled
            if update(output.key, value, timestamp, output.max_age):
                changed.append(output.key)
            cells.append(cell_of(output.key))  # type: ignore[arg-type]
            for data in output.data:
                converted = data.convert(raw, scaled)
                if converted is None:
                    self.counters["unmapped_value"] += 1
                    continue
                if update(data.name, converted, timestamp, output.max_age):
                    changed.append(data.name)
                cells.append(cell_of(data.name))  # type: ignore[arg-type]
        route.pages[page_key] = _Page(masked, cells)
        return changed

    def _bind(self, state: VehicleState) -> None:
        """A new state: forget the payload memory (its cells belong to the previous state)."""
        for table in self._routes.values():
            for route in table.values():
                route.pages.clear()
        self._state = state

    def reset(self) -> None:
        """Forget previous payloads: the next frame of every id is decoded."""
        self._state = None


def _data_out(binding: Binding, choices: dict[int, str]) -> _DataOut:
    return _DataOut(
        binding.name,
        binding.kind,
        binding.scale,
        binding.offset,
        dict(binding.values),
        choices,
    )


def _route(message: Message, outputs: list[_Output], rolling: set[str]) -> _Route:
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
    return _Route(message, message.length, mask, mux_mask, outputs, {})
