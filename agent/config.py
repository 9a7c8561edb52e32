"""``agent.toml``: read once, validated once, every problem reported together.

The result is a tree of frozen objects; nothing downstream sees a raw dict. Relative paths are
resolved against the folder of the configuration file, except the outbox path, which is resolved
against ``state_dir`` (systemd's ``$STATE_DIRECTORY`` when set, else the config folder).

Example: ``docs/agent.example.toml``.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from agent.errors import ConfigError, Problem
from agent.gps.clock import CLOCK_POLICIES, ClockPolicy
from agent.obd.settings import ObdConfig
from agent.source_settings import BusConfig, BusSpec, GpsConfig, ReplayPace
from agent.suggest import did_you_mean
from agent.wire import DEFAULT_PREFIX, valid_topic_level

_LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_CONFIG_BYTES = 1024 * 1024  # agent.toml is a few hundred bytes; anything near this is wrong
_LARGEST = 10**12  # any count, size or duration above this is a mistake, not a setting
_MQTT_KEYS = {"host", "port", "protocol", "client_id", "keepalive", "tls", "ca_file", "cert_file"}
_MQTT_KEYS |= {"key_file", "username", "password", "password_file", "password_env", "max_inflight"}
_MQTT_KEYS |= {"tcp_nodelay", "reconnect_min", "reconnect_max", "topic_prefix", "connack_timeout"}
_MQTT_KEYS |= {"max_publish_rate", "publish_burst"}
_CAN_KEYS = {
    "name",
    "interface",
    "channel",
    "bitrate",
    "fd",
    "data_bitrate",
    "dbc",
    "signal_map",
    "receive_own_messages",
    "replay",
    "replay_speed",
    "options",
}


@dataclass(frozen=True, slots=True)
class CanReplay:
    """A recorded log fed to a bus instead of the interface (test benches, demos)."""

    bus: str
    path: Path
    speed: float = 1.0  # 1.0 = the recording's pace; 0 = as fast as possible


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"  # "5" or "3.1.1"
    client_id: str = ""
    keepalive: int = 30
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    max_inflight: int = 100
    tcp_nodelay: bool = True
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    connack_timeout: float = 10.0  # a broker that accepts TCP but never answers CONNECT
    # Events per second the pump publishes, sustained and at once: a backlog drains at this pace,
    # below the backend's per-vehicle limit ([limits] vehicle_rate, 100/s) so nothing is refused.
    max_publish_rate: float = 50.0
    publish_burst: int = 500


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: Path
    max_events: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_age: float = 7 * 86400.0  # seconds
    synchronous: str = "full"  # "full" or "normal"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    vin: str
    fleet_id: str | None
    buses: tuple[BusConfig, ...]
    gps: GpsConfig | None
    mqtt: MqttConfig
    outbox: OutboxConfig
    monitors_file: Path | None
    clock: ClockPolicy  # "auto" | "system" | "gps" (docs/clock.md)
    topic_prefix: str
    state_dir: Path
    log_level: str = "info"
    source: Path | None = None  # the file it was read from
    dbc: tuple[BusSpec, ...] = ()  # the DBC set of each bus, same order as ``buses``
    can_replay: tuple[CanReplay, ...] = ()
    obd: tuple[ObdConfig, ...] = ()  # [[obd]]: diagnostic buses polled (docs/obd.md)

    def bus_specs(self) -> list[BusSpec]:
        """The DBC set and signal map of each bus, for ``agent.can.dbc.load_vehicle``."""
        return list(self.dbc)


class _Reader:
    """Collects problems while reading one TOML table."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.problems: list[Problem] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def get(
        self, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str
    ) -> Any:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, str) and "\x00" in value:
            self.bad(f"{where}.{key}", "must not contain a NUL character")
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            self.bad(f"{where}.{key}", f"expected {names}, got {type(value).__name__}")
            return None
        return value

    def path(self, table: Mapping[str, Any], key: str, where: str, base: Path | None = None) -> Any:
        text = self.get(table, key, str, where)
        if not text:
            return None
        found = self._expand(text, f"{where}.{key}")
        if found is None:
            return None
        return found if found.is_absolute() else (base or self.base) / found

    def existing(self, table: Mapping[str, Any], key: str, where: str) -> Path | None:
        found: Path | None = self.path(table, key, where)
        if found is not None and not found.is_file():
            self.bad(f"{where}.{key}", f"file not found: {found}")
        return found

    def _expand(self, text: str, where: str) -> Path | None:
        try:
            return Path(text).expanduser()
        except RuntimeError as exc:  # "~user" of an unknown user, no home directory
            self.bad(where, f"cannot expand {text!r}: {exc}")
            return None

    def existing_item(self, text: str, where: str) -> Path | None:
        if "\x00" in text:
            self.bad(where, "must not contain a NUL character")
            return None
        found = self._expand(text, where)
        if found is None:
            return None
        found = found if found.is_absolute() else self.base / found
        if not found.is_file():
            self.bad(where, f"file not found: {found}")
            return None
        return found

    def positive(
        self,
        table: Mapping[str, Any],
        key: str,
        where: str,
        default: Any,
        maximum: float = _LARGEST,
    ) -> Any:
        value = self.get(table, key, type(default), where)
        if value is None:
            return default
        if not value > 0:  # also NaN
            self.bad(f"{where}.{key}", "must be positive")
            return default
        if value > maximum:
            self.bad(f"{where}.{key}", f"must be at most {maximum:g}")
            return default
        return value

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            self.bad(f"{where}.{key}", f"unknown setting{did_you_mean(key, allowed)}")

    def table(self, root: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = root.get(key, {})
        if not isinstance(value, dict):
            self.bad(f"$.{key}", "expected a table")
            return {}
        return value


def _read_bus(
    r: _Reader, raw: Any, index: int
) -> tuple[BusConfig, BusSpec, CanReplay | None] | None:
    where = f"$.can[{index}]"
    if not isinstance(raw, dict):
        r.bad(where, "expected a table ([[can]])")
        return None
    for key in sorted(set(raw) - _CAN_KEYS):
        hint = did_you_mean(key, _CAN_KEYS) or " (interface options go in [can.options])"
        r.bad(f"{where}.{key}", f"unknown setting{hint}")
    channel = r.get(raw, "channel", str, where) or ""
    name = r.get(raw, "name", str, where) or channel or f"can{index}"
    interface = r.get(raw, "interface", str, where) or "socketcan"
    options = _read_can_options(r, raw, interface, where)
    if not channel:
        r.bad(f"{where}.channel", "required (e.g. can0, vcan0)")
    dbc_raw = raw.get("dbc", [])
    dbc_list = [dbc_raw] if isinstance(dbc_raw, str) else dbc_raw
    dbc_files: list[Path] = []
    if not isinstance(dbc_list, list) or not all(isinstance(d, str) for d in dbc_list):
        r.bad(f"{where}.dbc", "expected a file name or a list of file names")
    else:
        for i, item in enumerate(dbc_list):
            found = r.existing_item(item, f"{where}.dbc[{i}]")
            if found is not None:
                dbc_files.append(found)
    fd = bool(r.get(raw, "fd", bool, where))
    data_bitrate = r.get(raw, "data_bitrate", int, where)
    if data_bitrate is not None and not fd:
        r.bad(f"{where}.data_bitrate", "only meaningful with fd = true")
    bus = BusConfig(
        name=name,
        interface=interface,
        channel=channel,
        bitrate=r.get(raw, "bitrate", int, where),
        fd=fd,
        data_bitrate=data_bitrate,
        receive_own_messages=bool(r.get(raw, "receive_own_messages", bool, where)),
        options=options,
    )
    replay_path = r.existing(raw, "replay", where)
    speed = r.get(raw, "replay_speed", float, where)
    if speed is not None and not 0 <= speed <= _LARGEST:  # also NaN
        r.bad(f"{where}.replay_speed", "must be 0 (as fast as possible) or positive")
    replay = CanReplay(name, replay_path, 1.0 if speed is None else speed) if replay_path else None
    return bus, BusSpec(name, tuple(dbc_files), r.existing(raw, "signal_map", where)), replay


def _read_can_options(
    r: _Reader, raw: Mapping[str, Any], interface: str, where: str
) -> dict[str, Any]:
    """``[can.options]``: python-can keyword arguments, kept apart from edgemon's own keys so a
    typo in ours stays an error instead of reaching python-can."""
    options = raw.get("options", {})
    if not isinstance(options, dict):
        r.bad(f"{where}.options", "expected a table ([can.options])")
        options = {}
    # python-can's own tables say which interfaces and options exist: loaded only to check them
    from agent.can.options import interface_problems, option_problems  # noqa: PLC0415

    problems = interface_problems(interface, where)
    if not problems:
        problems = option_problems(interface, options, where)
    for problem in problems:
        r.bad(problem.path, problem.message)
    return dict(options)


def _read_password(r: _Reader, raw: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    where = "$.mqtt"
    password: str | None = r.get(raw, "password", str, where)
    password_file = r.existing(raw, "password_file", where)
    password_env = r.get(raw, "password_env", str, where)
    if password_file is not None and password_file.is_file():
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            r.bad(f"{where}.password_file", f"cannot be read as UTF-8 text: {type(exc).__name__}")
    elif password_env:
        if password_env not in env:
            r.bad(f"{where}.password_env", f"environment variable {password_env} is not set")
        password = env.get(password_env)
    return password


def _read_mqtt(r: _Reader, raw: dict[str, Any], env: Mapping[str, str]) -> MqttConfig:
    where = "$.mqtt"
    r.unknown_keys(raw, _MQTT_KEYS, where)
    protocol = str(raw.get("protocol", "5"))
    if protocol not in ("5", "3.1.1"):
        r.bad(f"{where}.protocol", 'must be 5 or "3.1.1"')
    ca_file = r.existing(raw, "ca_file", where)
    cert_file = r.existing(raw, "cert_file", where)
    key_file = r.existing(raw, "key_file", where)
    if (cert_file is None) != (key_file is None):
        r.bad(f"{where}.cert_file", "cert_file and key_file go together")
    tls = r.get(raw, "tls", bool, where)
    port_default = 8883 if (tls or ca_file or cert_file) else 1883
    port = r.positive(raw, "port", where, port_default)
    if port > 65535:
        r.bad(f"{where}.port", "must be at most 65535")
    return MqttConfig(
        host=r.get(raw, "host", str, where) or "127.0.0.1",
        port=port,
        protocol=protocol,
        client_id=r.get(raw, "client_id", str, where) or "",
        keepalive=r.positive(raw, "keepalive", where, 30, maximum=65535),  # MQTT: 16 bits
        tls=bool(tls if tls is not None else (ca_file or cert_file)),
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        username=r.get(raw, "username", str, where),
        password=_read_password(r, raw, env),
        max_inflight=r.positive(raw, "max_inflight", where, 100, maximum=65535),
        tcp_nodelay=bool(raw.get("tcp_nodelay", True)),
        reconnect_min=r.positive(raw, "reconnect_min", where, 0.5),
        reconnect_max=r.positive(raw, "reconnect_max", where, 30.0),
        connack_timeout=r.positive(raw, "connack_timeout", where, 10.0),
        max_publish_rate=r.positive(raw, "max_publish_rate", where, 50.0),
        publish_burst=r.positive(raw, "publish_burst", where, 500, maximum=1_000_000),
    )


def _read_outbox(r: _Reader, raw: dict[str, Any], state_dir: Path) -> OutboxConfig:
    where = "$.outbox"
    r.unknown_keys(raw, {"path", "max_events", "max_bytes", "max_age_hours", "synchronous"}, where)
    path = r.path(raw, "path", where, base=state_dir) or state_dir / "outbox.sqlite"
    synchronous = (r.get(raw, "synchronous", str, where) or "full").lower()
    if synchronous not in ("full", "normal"):
        r.bad(f"{where}.synchronous", "must be full or normal")
    return OutboxConfig(
        path=path,
        max_events=r.positive(raw, "max_events", where, 100_000),
        max_bytes=r.positive(raw, "max_bytes", where, 64 * 1024 * 1024),
        max_age=r.positive(raw, "max_age_hours", where, 168.0) * 3600.0,
        synchronous=synchronous,
    )


def _read_gps(r: _Reader, raw: dict[str, Any]) -> GpsConfig | None:
    if not raw:
        return None
    where = "$.gps"
    r.unknown_keys(raw, {"port", "baudrate", "replay_pace", "replay_speed"}, where)
    port = r.get(raw, "port", str, where) or ""
    # a plain relative file name (replay on a bench) is resolved like every other path
    if port and "://" not in port and not port.startswith("/"):
        port = str(r.base / port)
    pace = r.get(raw, "replay_pace", str, where) or "realtime"
    speed = r.get(raw, "replay_speed", float, where)
    if speed is not None and "replay_pace" in raw:
        r.bad(f"{where}.replay_pace", "give replay_speed or replay_pace, not both")
    config = GpsConfig(
        port=port,
        baudrate=r.get(raw, "baudrate", int, where) or 9600,
        replay_pace=cast(ReplayPace, pace),
        replay_speed=speed,
    )
    for problem in config.problems(where):
        r.bad(problem.path, problem.message)
    return config


_TOP_KEYS = {"vin", "fleet_id", "state_dir", "monitors_file", "clock", "log_level"}
_TOP_KEYS |= {"can", "gps", "mqtt", "outbox", "obd"}
_OBD_KEYS = {"name", "interface", "channel", "bitrate", "addressing", "transport", "options"}
_OBD_KEYS |= {"requests_per_second", "pid_period", "codes_period", "awake_window", "timeout"}
_OBD_KEYS |= {"scan_cache_age", "record"}


def _read_obd_bus(r: _Reader, raw: Any, index: int) -> ObdConfig | None:
    where = f"$.obd[{index}]"
    if not isinstance(raw, dict):
        r.bad(where, "expected a table ([[obd]])")
        return None
    r.unknown_keys(raw, _OBD_KEYS, where)
    channel = r.get(raw, "channel", str, where) or ""
    interface = r.get(raw, "interface", str, where) or "socketcan"
    addressing = str(raw.get("addressing", "11"))
    if addressing not in ("11", "29"):
        r.bad(f"{where}.addressing", "11 or 29 (bits of the CAN identifiers)")
    defaults = ObdConfig(name="", channel="")
    config = ObdConfig(
        name=r.get(raw, "name", str, where) or channel or f"obd{index}",
        channel=channel,
        interface=interface,
        bitrate=r.get(raw, "bitrate", int, where),
        extended=addressing == "29",
        transport=r.get(raw, "transport", str, where) or "python",
        requests_per_second=r.positive(raw, "requests_per_second", where, 1.0),
        pid_period=r.positive(raw, "pid_period", where, defaults.pid_period),
        codes_period=r.positive(raw, "codes_period", where, defaults.codes_period),
        awake_window=r.positive(raw, "awake_window", where, defaults.awake_window),
        timeout=r.positive(raw, "timeout", where, defaults.timeout, maximum=10.0),
        scan_cache_age=_cache_age(r, raw, where, defaults.scan_cache_age),
        record=r.path(raw, "record", where),
        options=_read_can_options(r, raw, interface, where),
    )
    for problem in config.problems(where):
        r.bad(problem.path, problem.message)
    return config


def _cache_age(r: _Reader, raw: dict[str, Any], where: str, default: float) -> float:
    value = r.get(raw, "scan_cache_age", float, where)
    return default if value is None else value


def _read_obd(r: _Reader, doc: Mapping[str, Any]) -> tuple[ObdConfig, ...]:
    raw_list = doc.get("obd", [])
    if not isinstance(raw_list, list):
        r.bad("$.obd", "expected an array of tables ([[obd]])")
        return ()
    found = [b for i, raw in enumerate(raw_list) if (b := _read_obd_bus(r, raw, i)) is not None]
    names = [b.name for b in found]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        r.bad("$.obd", f"bus name {dup!r} used twice")
    return tuple(found)


def _choice(
    r: _Reader, doc: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]
) -> str:
    value = (r.get(doc, key, str, "$") or default).lower()
    if value not in allowed:
        r.bad(f"$.{key}", f"one of {', '.join(allowed)}")
    return str(value)


def _read_buses(
    r: _Reader, doc: Mapping[str, Any]
) -> list[tuple[BusConfig, BusSpec, CanReplay | None]]:
    raw_list = doc.get("can", [])
    if not isinstance(raw_list, list):
        r.bad("$.can", "expected an array of tables ([[can]])")
        return []
    found = [b for i, raw in enumerate(raw_list) if (b := _read_bus(r, raw, i)) is not None]
    names = [bus.name for bus, _, _ in found]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        r.bad("$.can", f"bus name {dup!r} used twice")
    return found


def _read_prefix(r: _Reader, mqtt_raw: Mapping[str, Any]) -> str:
    prefix = r.get(mqtt_raw, "topic_prefix", str, "$.mqtt") or DEFAULT_PREFIX
    wild = "+" in prefix or "#" in prefix
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or wild:
        r.bad("$.mqtt.topic_prefix", "no leading/trailing '/', no wildcards")
    return str(prefix)


def parse_config(
    doc: Mapping[str, Any], base: Path, env: Mapping[str, str] | None = None
) -> AgentConfig:
    """Validate a parsed TOML document; raise ConfigError with every problem."""
    env = os.environ if env is None else env
    r = _Reader(base)
    r.unknown_keys(doc, _TOP_KEYS, "$")
    vin = r.get(doc, "vin", str, "$") or ""
    if not valid_topic_level(vin):
        r.bad("$.vin", "required: 1-64 characters of A-Z a-z 0-9 _ . : -")
    fleet_id = r.get(doc, "fleet_id", str, "$")
    if fleet_id is not None and not valid_topic_level(fleet_id):
        r.bad("$.fleet_id", "1-64 characters of A-Z a-z 0-9 _ . : -")
    state_text = env.get("STATE_DIRECTORY", "").split(":")[0]
    state_dir = r.path(doc, "state_dir", "$") or (Path(state_text) if state_text else base)
    buses = _read_buses(r, doc)
    mqtt_raw = r.table(doc, "mqtt")
    config = AgentConfig(
        vin=vin,
        fleet_id=fleet_id,
        buses=tuple(bus for bus, _, _ in buses),
        dbc=tuple(spec for _, spec, _ in buses),
        can_replay=tuple(replay for _, _, replay in buses if replay is not None),
        gps=_read_gps(r, r.table(doc, "gps")),
        mqtt=_read_mqtt(r, mqtt_raw, env),
        outbox=_read_outbox(r, r.table(doc, "outbox"), state_dir),
        monitors_file=r.existing(doc, "monitors_file", "$"),
        clock=cast(ClockPolicy, _choice(r, doc, "clock", "auto", CLOCK_POLICIES)),
        topic_prefix=_read_prefix(r, mqtt_raw),
        state_dir=state_dir,
        log_level=_choice(r, doc, "log_level", "info", _LOG_LEVELS),
        obd=_read_obd(r, doc),
    )
    if r.problems:
        raise ConfigError(r.problems, summary=_summary(r.problems))
    return config


def _summary(problems: list[Problem]) -> str:
    lines = [f"configuration has {len(problems)} problem(s):"]
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def load_config(path: Path, env: Mapping[str, str] | None = None) -> AgentConfig:
    """Read and validate ``agent.toml``; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem("$", f"cannot read {path}: {exc.strerror or exc}")]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem("$", f"{path} is larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("$", f"{path} is not valid TOML: {exc}")]) from exc
    except RecursionError as exc:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError([Problem("$", f"{path} nests arrays or tables too deep")]) from exc
    config = parse_config(doc, path.resolve().parent, env)
    logging.getLogger(__name__).debug("configuration read from %s", path)
    return replace(config, source=path.resolve())
