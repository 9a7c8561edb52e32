"""The vehicle's signals: DBC files (cantools) per bus, and the map naming them the Stellantis way.

Loading happens once, at start-up: every DBC of every bus (strict first, then non-strict with a
warning), then the signal map of each bus. The result, :class:`Vehicle`, is what the decoder and
the monitor validation work from; :class:`SignalCatalog` answers "what is this name?" for both
data names (``vehicle.kinetic.speed``) and DBC keys (``VehicleMotion.Speed``).

Only this module and :mod:`agent.can.decode` know cantools types.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cantools
from cantools.database.can import Database, Message, Signal

from agent.can.dbc_repair import DbcRepairError, repair_dbc_text
from agent.errors import DbcError
from agent.model import SignalInfo, SignalKind, Value
from agent.shipped import demo_dbc, demo_map
from agent.source_settings import BusSpec
from agent.suggest import did_you_mean

log = logging.getLogger(__name__)

# The installed package's shipped set (<venv>/share/edgemon/dbc), else this checkout's dbc/.
DEMO_DBC = demo_dbc()
DEMO_MAP = demo_map()

# Key of a message in a bus's id table: the id, with bit 31 set for extended (29-bit) ids.
EXTENDED_FLAG = 0x8000_0000
MAX_DBC_BYTES = 16 * 1024 * 1024  # opendbc's largest is 0.8 MB

_KINDS = {"number": SignalKind.NUMBER, "boolean": SignalKind.BOOLEAN, "enum": SignalKind.ENUM}
_ENTRY_KEYS = {"signal", "kind", "scale", "offset", "unit", "values"}


@dataclass(frozen=True, slots=True)
class Binding:
    """A data name bound to one DBC signal, with its transform."""

    name: str
    kind: SignalKind
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    values: Mapping[int, Value] = field(default_factory=dict)  # raw value -> data value


@dataclass(frozen=True, slots=True)
class SignalRef:
    """Where a name lives: bus, cantools message and signal, and its data-name binding if any."""

    bus: str
    message: Message
    signal: Signal
    binding: Binding | None = None

    @property
    def key(self) -> str:
        return f"{self.message.name}.{self.signal.name}"


@dataclass(frozen=True)
class BusDatabase:
    """The loaded DBC set of one bus: messages by id key and by name."""

    spec: BusSpec
    by_id: Mapping[int, Message]
    by_name: Mapping[str, Message]


def message_key(message: Message) -> int:
    """The id-table key of a message (id, plus EXTENDED_FLAG for 29-bit ids)."""
    if message.is_extended_frame:
        return int(message.frame_id) | EXTENDED_FLAG
    return int(message.frame_id)


def mux_page_count(message: Message, signal: Signal) -> int:
    """How many multiplexer pages share the message's cycle (1 for a plain signal)."""
    mux_name = signal.multiplexer_signal
    if not signal.multiplexer_ids or mux_name is None:
        return 1
    ids: set[int] = set()
    for other in message.signals:
        if other.multiplexer_signal == mux_name and other.multiplexer_ids:
            ids.update(other.multiplexer_ids)
    return max(1, len(ids))


def signal_period(message: Message, signal: Signal) -> float | None:
    """Expected seconds between two frames carrying this signal (GenMsgCycleTime), or None."""
    cycle = message.cycle_time
    if not cycle or cycle <= 0:
        return None
    return cycle * mux_page_count(message, signal) / 1000.0


class SignalCatalog:
    """What the vehicle provides, by data name and by ``Message.Signal`` key."""

    def __init__(self, refs: Mapping[str, SignalRef], data_names: Iterable[str]) -> None:
        self._refs = refs
        self._data_names = sorted(data_names)
        self._infos: dict[str, SignalInfo] = {}

    def describe(self, name: str) -> SignalInfo | None:
        info = self._infos.get(name)
        if info is None:
            ref = self._refs.get(name)
            if ref is None:
                return None
            info = _signal_info(name, ref)
            self._infos[name] = info
        return info

    def names(self) -> list[str]:
        """Data names first (sorted), then every ``Message.Signal`` key (sorted)."""
        data_names = set(self._data_names)
        keys = sorted(k for k in self._refs if k not in data_names)
        return [*self._data_names, *keys]

    def data_names(self) -> list[str]:
        return list(self._data_names)


def _signal_info(name: str, ref: SignalRef) -> SignalInfo:
    signal = ref.signal
    period = signal_period(ref.message, signal)
    binding = ref.binding
    if binding is None:
        choices = tuple(str(c) for c in (signal.choices or {}).values())
        kind = SignalKind.ENUM if choices else SignalKind.NUMBER
        low, high = _dbc_range(signal, 1.0, 0.0)
        return SignalInfo(name, kind, choices, signal.unit or "", period, minimum=low, maximum=high)
    names: tuple[str, ...] = ()
    if binding.kind is SignalKind.ENUM:
        names = tuple(dict.fromkeys(str(v) for v in binding.values.values()))
        if not names:
            names = tuple(str(c) for c in (signal.choices or {}).values())
    low, high = _dbc_range(signal, binding.scale, binding.offset)
    unit = binding.unit or signal.unit or ""
    return SignalInfo(name, binding.kind, names, unit, period, minimum=low, maximum=high)


def _dbc_range(signal: Signal, scale: float, offset: float) -> tuple[float | None, float | None]:
    """The DBC's ``[min|max]`` through the map's transform; none when the DBC declares none
    (absent, or ``[0|0]``, which DBC editors write for "not specified")."""
    low, high = signal.minimum, signal.maximum
    if low is None or high is None or (low == 0 and high == 0):
        return None, None
    ends = sorted((float(low) * scale + offset, float(high) * scale + offset))
    return ends[0], ends[1]


@dataclass(frozen=True)
class Vehicle:
    """Every bus's DBC set plus the data-name bindings; built by :func:`load_vehicle`."""

    buses: Mapping[str, BusDatabase]
    refs: Mapping[str, SignalRef]  # data names and Message.Signal keys
    catalog: SignalCatalog
    warnings: tuple[str, ...] = ()

    def lookup(self, name: str) -> SignalRef | None:
        return self.refs.get(name)


def demo_buses() -> list[BusSpec]:
    """The demo vehicle on one bus, "can0"."""
    return [BusSpec("can0", (DEMO_DBC,), DEMO_MAP)]


def load_vehicle(buses: Sequence[BusSpec]) -> Vehicle:
    """Load every DBC and signal map; raise DbcError (one line) when one cannot be used."""
    warnings: list[str] = []
    databases: dict[str, BusDatabase] = {}
    refs: dict[str, SignalRef] = {}
    for spec in buses:
        if spec.name in databases:
            raise DbcError(f"bus {spec.name!r} is listed twice")
        bus_db = _load_bus(spec, warnings)
        databases[spec.name] = bus_db
        for message in bus_db.by_name.values():
            for signal in message.signals:
                refs.setdefault(
                    f"{message.name}.{signal.name}", SignalRef(spec.name, message, signal)
                )
    data_names: list[str] = []
    problems: list[str] = []
    for spec in buses:
        if spec.signal_map is None:
            continue
        for name, ref in _load_map(spec, databases[spec.name], problems).items():
            if name in refs:
                problems.append(f"{spec.signal_map}: {name}: name defined twice")
                continue
            refs[name] = ref
            data_names.append(name)
    if problems:
        raise DbcError("; ".join(problems))
    return Vehicle(databases, refs, SignalCatalog(refs, data_names), tuple(warnings))


def _load_bus(spec: BusSpec, warnings: list[str]) -> BusDatabase:
    by_id: dict[int, Message] = {}
    by_name: dict[str, Message] = {}
    for path in spec.dbc_files:
        for message in load_dbc(path, warnings).messages:
            key = message_key(message)
            if key in by_id or message.name in by_name:
                text = f"{path}: message {message.name} ({message.frame_id:#x}) already defined"
                text += f" on bus {spec.name}; the first definition is kept"
                log.warning("%s", text)
                warnings.append(text)
                continue
            by_id[key] = message
            by_name[message.name] = message
    return BusDatabase(spec, by_id, by_name)


def load_dbc(path: Path, warnings: list[str] | None = None) -> Database:
    """One DBC file, repaired where it has one reading (:mod:`agent.can.dbc_repair`, one warning per
    kind of repair); strict, else non-strict with a warning, else DbcError naming file + reason."""
    text = _read_dbc_text(path)
    try:
        text, repairs = repair_dbc_text(text)
    except DbcRepairError as exc:
        raise DbcError(f"{path}: cannot load DBC: {exc}") from exc
    notes = [f"{path}: repaired: {repair.describe()}" for repair in repairs]
    try:
        database = _load_text(path, text, strict=True)
    except Exception as strict_exc:  # cantools raises many types (ParseError, ValueError, ...)
        try:
            database = _load_text(path, text, strict=False)
        except Exception as exc:
            raise DbcError(f"{path}: cannot load DBC: {_one_line(exc)}") from exc
        notes.append(f"{path}: loaded non-strict ({_one_line(strict_exc)})")
    for note in notes:
        log.warning("%s", note)
        if warnings is not None:
            warnings.append(note)
    return database


def _read_dbc_text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_DBC_BYTES + 1)
    except FileNotFoundError as exc:
        raise DbcError(f"{path}: DBC file not found") from exc
    except OSError as exc:
        raise DbcError(f"{path}: cannot read DBC: {exc.strerror or exc}") from exc
    if len(data) > MAX_DBC_BYTES:
        raise DbcError(f"{path}: larger than {MAX_DBC_BYTES} bytes, not a DBC")
    return data.decode("cp1252", errors="replace")  # cantools' own default for DBC files


def _load_text(path: Path, text: str, strict: bool) -> Database:
    database = cantools.database.load_string(text, database_format="dbc", strict=strict)
    if not isinstance(database, Database):
        raise DbcError(f"{path}: not a CAN database")
    return database


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _load_map(spec: BusSpec, bus_db: BusDatabase, problems: list[str]) -> dict[str, SignalRef]:
    path = spec.signal_map
    assert path is not None
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.append(f"{path}: cannot read signal map: {exc.strerror or exc}")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: not valid TOML: {_one_line(exc)}")
        return {}
    entries = document.get("signals")
    if not isinstance(entries, dict):
        problems.append(f'{path}: expected a [signals."<data name>"] table')
        return {}
    found: dict[str, SignalRef] = {}
    for name, entry in entries.items():
        ref = _map_entry(path, bus_db, name, entry, problems)
        if ref is not None:
            found[name] = ref
    return found


def _map_entry(
    path: Path, bus_db: BusDatabase, name: str, entry: Any, problems: list[str]
) -> SignalRef | None:
    where = f"{path}: {name}"
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a table")
        return None
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        hints = "".join(did_you_mean(key, _ENTRY_KEYS) for key in unknown)
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}{hints}")
    target = entry.get("signal")
    if not isinstance(target, str) or target.count(".") != 1:
        problems.append(f"{where}: 'signal' must be \"Message.Signal\"")
        return None
    message_name, signal_name = target.split(".")
    message = bus_db.by_name.get(message_name)
    dbc_names = ", ".join(str(p) for p in bus_db.spec.dbc_files)
    if message is None:
        hint = did_you_mean(message_name, bus_db.by_name)
        problems.append(f"{where} -> {target}: no message {message_name} in {dbc_names}{hint}")
        return None
    signal = next((s for s in message.signals if s.name == signal_name), None)
    if signal is None:
        hint = did_you_mean(signal_name, [s.name for s in message.signals])
        problems.append(
            f"{where} -> {target}: message {message_name} has no signal {signal_name}"
            f" in {dbc_names}{hint}"
        )
        return None
    binding = _binding(where, name, entry, signal, problems)
    return None if binding is None else SignalRef(bus_db.spec.name, message, signal, binding)


def _binding(
    where: str, name: str, entry: dict[str, Any], signal: Signal, problems: list[str]
) -> Binding | None:
    count = len(problems)
    values = _values(where, entry.get("values"), signal, problems)
    kind = _kind(where, entry.get("kind"), values, problems)
    scale, offset = entry.get("scale", 1.0), entry.get("offset", 0.0)
    for key, number in (("scale", scale), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, int | float):
            problems.append(f"{where}: '{key}' must be a number")
    unit = entry.get("unit", "")
    if not isinstance(unit, str):
        problems.append(f"{where}: 'unit' must be text")
    if len(problems) > count:
        return None
    return Binding(name, kind, float(scale), float(offset), unit, values)


def _values(where: str, raw: Any, signal: Signal, problems: list[str]) -> dict[int, Value]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: 'values' must be a table")
        return {}
    by_choice = {str(v): int(k) for k, v in (signal.choices or {}).items()}
    result: dict[int, Value] = {}
    for key, target in raw.items():
        if not isinstance(target, bool | str):
            problems.append(f"{where}: values.{key} must map to text or true/false")
            continue
        if key in by_choice:
            result[by_choice[key]] = target
        elif re.fullmatch(r"-?\d+", key):
            result[int(key)] = target
        else:
            choices = ", ".join(by_choice) or "none"
            problems.append(
                f"{where}: values.{key} is not a choice of {signal.name} (choices: {choices})"
            )
    return result


def _kind(where: str, raw: Any, values: Mapping[int, Value], problems: list[str]) -> SignalKind:
    targets = list(values.values())
    inferred = SignalKind.NUMBER
    if targets and all(isinstance(t, bool) for t in targets):
        inferred = SignalKind.BOOLEAN
    elif targets and all(isinstance(t, str) for t in targets):
        inferred = SignalKind.ENUM
    elif targets:
        problems.append(f"{where}: 'values' mixes text and true/false")
    if raw is None:
        return inferred
    kind = _KINDS.get(raw) if isinstance(raw, str) else None
    if kind is None:
        problems.append(f"{where}: 'kind' must be one of {', '.join(_KINDS)}")
        return inferred
    if targets and kind is not inferred:
        problems.append(f"{where}: kind {raw} does not match its 'values'")
    return kind
