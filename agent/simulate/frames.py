"""CAN frames of a simulated vehicle: scenario values -> DBC payloads. Pure (files are read by
``load_database``/``load_signal_map`` only).

Scenario names are data names of the signal map or ``Message.Signal`` keys. A data name's value
goes through the map backwards: an enum name becomes the DBC choice the map binds to it, a boolean
becomes the choice (or 1/0), a number undoes ``value * scale + offset``. Signals the scenario does
not drive keep the DBC start value (else 0, clipped into range). Rolling counters (``*Counter``,
``Alive*``) count +1 per frame; checksums (``*Checksum``: byte sum, ``*CRC``: CRC-8/16) cover
the payload bytes before them. Multiplexed messages send their pages in turn, one per cycle.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools
from cantools.database.can import Database, Message, Signal
from cantools.database.errors import Error as CantoolsError
from textparser import ParseError  # type: ignore[import-untyped]

from agent.errors import DbcError, Problem
from agent.model import Frame
from agent.simulate.scenario import ScenarioValue
from agent.suggest import did_you_mean

_COUNTER = re.compile(r"(counter|alive)", re.IGNORECASE)
_CHECKSUM = re.compile(r"(checksum|crc)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MapEntry:
    """One signal map entry (``[signals."data.name"]`` of a ``*.map.toml``)."""

    data_name: str
    message: str
    signal: str
    scale: float = 1.0
    offset: float = 0.0
    values: tuple[tuple[str, ScenarioValue], ...] = ()  # (DBC choice or raw text, mapped value)


def load_database(paths: Sequence[Path]) -> Database:
    database = cantools.database.Database()
    for path in paths:
        try:
            database.add_dbc_file(str(path))
        except (OSError, ValueError, ParseError, CantoolsError) as exc:
            raise DbcError(f"{path}: {exc}") from exc
    return database


def load_signal_map(path: Path) -> dict[str, MapEntry]:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DbcError(f"{path}: {exc}") from exc
    entries: dict[str, MapEntry] = {}
    for name, item in raw.get("signals", {}).items():
        message, _, signal = str(item.get("signal", "")).partition(".")
        values = tuple((str(k), v) for k, v in item.get("values", {}).items())
        scale, offset = float(item.get("scale", 1.0)), float(item.get("offset", 0.0))
        entries[name] = MapEntry(name, message, signal, scale, offset, values)
    return entries


def _put_aligned(payload: bytearray, signal: Signal, value: int) -> bool:
    """Write a byte-aligned 8/16-bit field in place (a second encode costs as much as the
    first); False when the field is not laid out that simply."""
    if signal.length == 8 and signal.start % 8 == (7 if signal.byte_order == "big_endian" else 0):
        payload[signal.start // 8] = value
        return True
    if signal.length == 16 and signal.byte_order == "little_endian" and signal.start % 8 == 0:
        payload[signal.start // 8 : signal.start // 8 + 2] = value.to_bytes(2, "little")
        return True
    return False


def _crc8(data: bytes) -> int:
    """CRC-8/SAE-J1850 (poly 0x1D, init 0xFF, xorout 0xFF)."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1D) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc ^ 0xFF


def _crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def checksum_value(signal: Signal, payload: bytes) -> int:
    """The checksum of the payload bytes that precede the checksum signal's first byte."""
    covered = payload[: signal.start // 8]
    if _CHECKSUM.search(signal.name) and "crc" in signal.name.lower():
        value = _crc16(covered) if signal.length > 8 else _crc8(covered)
    else:
        value = sum(covered)
    return value & ((1 << signal.length) - 1)


@dataclass(frozen=True, slots=True)
class _Layout:
    page: dict[str, Any]  # the multiplexer signal and this cycle's page, if multiplexed
    checksums: list[Signal]
    counters: list[Signal]
    plain: list[Signal]


class FrameBuilder:
    """Encodes the messages of one DBC set from scenario values."""

    def __init__(self, database: Database, signal_map: Mapping[str, MapEntry] | None = None):
        self.database = database
        self.signal_map = dict(signal_map or {})
        self._counts: dict[int, int] = {}
        self._layouts: dict[tuple[int, int | None], _Layout] = {}
        # name -> (value asked in DBC terms, value sent): the first clip of each name, which
        # ``simulate`` reports; a clipped value is never sent without a word
        self.clipped: dict[str, tuple[float, float]] = {}

    def messages(self) -> list[Message]:
        return sorted(self.database.messages, key=lambda m: (m.frame_id, m.name))

    def names(self) -> list[str]:
        """Every name a scenario may drive: the map's data names, then ``Message.Signal``."""
        keys = [f"{m.name}.{s.name}" for m in self.messages() for s in m.signals]
        return [*self.signal_map, *keys]

    def resolve(self, name: str) -> tuple[Message, Signal] | None:
        """The DBC signal a scenario name drives (data name first, then ``Message.Signal``)."""
        entry = self.signal_map.get(name)
        message_name, _, signal_name = name.partition(".")
        if entry is not None:
            message_name, signal_name = entry.message, entry.signal
        try:
            message = self.database.get_message_by_name(message_name)
            return message, message.get_signal_by_name(signal_name)
        except KeyError:
            return None

    def problems(self, names: Mapping[str, ScenarioValue]) -> list[Problem]:
        """Names the vehicle lacks and values it cannot carry (one sample value per name)."""
        found: list[Problem] = []
        for name, sample in names.items():
            where = f'$.signals."{name}"'
            target = self.resolve(name)
            if target is None:
                hint = did_you_mean(name, self.names())
                message = f"neither a data name of the map nor a DBC signal{hint}"
                found.append(Problem(where, message))
                continue
            try:
                self._physical(name, target[1], sample)
            except ValueError as exc:
                found.append(Problem(where, str(exc)))
        return found

    def _physical(self, name: str, signal: Signal, value: ScenarioValue) -> float | str:
        """The value in DBC terms: a choice name or a physical number, clipped into range."""
        entry = self.signal_map.get(name)
        if entry is not None and entry.values:
            for key, mapped in entry.values:
                if mapped == value and type(mapped) is type(value):
                    return int(key) if key.isdigit() else key
        if isinstance(value, str):
            choices = {str(c) for c in (signal.choices or {}).values()}
            if value in choices:
                return value
            raise ValueError(f"{value!r} is not a value of {signal.name} ({sorted(choices)})")
        number = float(value)
        if entry is not None:
            number = (number - entry.offset) / entry.scale
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        low = signal.minimum if signal.minimum is not None else -math.inf
        high = signal.maximum if signal.maximum is not None else math.inf
        sent = min(max(number, low), high)
        if sent != number and name not in self.clipped:
            self.clipped[name] = (number, sent)
        return sent

    def clip_warning(self, name: str) -> str:
        """The words for a name's first clip (``clipped`` holds it)."""
        asked, sent = self.clipped[name]
        target = self.resolve(name)
        signal = f"{target[0].name}.{target[1].name}" if target else name
        low, high = (target[1].minimum, target[1].maximum) if target else (None, None)
        return (
            f"{name}: {asked:g} is outside the range of {signal} in the DBC "
            f"({low:g}..{high:g}): sent as {sent:g}"
            if low is not None and high is not None
            else f"{name}: {asked:g} is outside the range of {signal} in the DBC: sent as {sent:g}"
        )

    def _default(self, signal: Signal) -> float:
        if signal.initial is not None:
            return float(signal.initial)  # type: ignore[arg-type]
        low = signal.minimum if signal.minimum is not None else 0.0
        high = signal.maximum if signal.maximum is not None else 0.0
        return float(min(max(0.0, low), high))

    def _layout(self, message: Message, count: int) -> _Layout:
        """This cycle's multiplexer value and signal roles (cached per message and page)."""
        muxers = [s for s in message.signals if s.is_multiplexer]
        pages = sorted({i for s in message.signals for i in (s.multiplexer_ids or ())})
        page = pages[count % len(pages)] if muxers and pages else None
        key = (message.frame_id, page)
        layout = self._layouts.get(key)
        if layout is None:
            carried = [
                s
                for s in message.signals
                if not s.is_multiplexer and (page is None or s.multiplexer_ids is None
                                             or page in s.multiplexer_ids)
            ]  # fmt: skip
            layout = _Layout(
                page={muxers[0].name: page} if muxers and page is not None else {},
                checksums=[s for s in carried if _CHECKSUM.search(s.name)],
                counters=[
                    s for s in carried if _COUNTER.search(s.name) and not _CHECKSUM.search(s.name)
                ],
                plain=[
                    s
                    for s in carried
                    if not _CHECKSUM.search(s.name) and not _COUNTER.search(s.name)
                ],
            )
            self._layouts[key] = layout
        return layout

    def frame(
        self, message: Message, t: float, values: Mapping[str, ScenarioValue], bus: str = "can0"
    ) -> Frame:
        """Encode ``message`` at ``t``; ``values`` maps scenario names to their value now."""
        count = self._counts.get(message.frame_id, 0)
        self._counts[message.frame_id] = count + 1
        layout = self._layout(message, count)
        by_signal = {}
        for name, value in values.items():
            target = self.resolve(name)
            if target is not None and target[0] is message:
                by_signal[target[1].name] = self._physical(name, target[1], value)
        data: dict[str, Any] = dict(layout.page)
        for signal in layout.plain:
            data[signal.name] = by_signal.get(signal.name, self._default(signal))
        for signal in layout.counters:
            data[signal.name] = count % (1 << signal.length)
        for signal in layout.checksums:
            data[signal.name] = 0
        # Not strict: every value is clipped into its range or a checked choice name already.
        payload = bytearray(message.encode(data, strict=False))
        for signal in layout.checksums:
            value = checksum_value(signal, bytes(payload))
            if not _put_aligned(payload, signal, value):
                data[signal.name] = value
                payload = bytearray(message.encode(data, strict=False))
        return Frame(
            timestamp=t,
            arbitration_id=message.frame_id,
            data=bytes(payload),
            is_extended=bool(message.is_extended_frame),
            is_fd=bool(message.is_fd),
            bus=bus,
        )
