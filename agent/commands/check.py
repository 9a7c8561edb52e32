"""``edgemon-agent check``: validate DBCs, signal map and monitors together.

    edgemon-agent check [--config FILE] [--dbc FILE]... [--map FILE] [--monitors FILE]... [--json]

Problems go to stdout, one per line (``SOURCE: $.json.path: message``); warnings and the summary
to stderr. ``--json``: one JSON document on stdout instead (for CI pipelines; docs/cli.md).
Exit 0 when everything is valid; 1 when a monitor has problems (every one listed); 2 when the
configuration, a DBC or the signal map cannot be used (every problem listed too), for unusable
arguments or unreadable files, and when there is nothing to check. Without ``--config`` or
``--dbc``: the demo vehicle of ``dbc/``, and the command says so. It judges what the vehicle
evaluates: problems of the callback part (``subscribeParam``) are warnings here, since the
backend delivers webhooks and judges them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent.can.dbc import DEMO_DBC, DEMO_MAP, Vehicle, demo_buses, load_vehicle
from agent.commands import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from agent.errors import ConfigError, DbcError, MonitorError, Problem, UsageError
from agent.monitors.loading import Checked, FileEntry, check_definitions, read_monitors_file
from agent.obd.cost import Cost, monitor_names, obd_cost
from agent.obd.names import ObdCatalog
from agent.obd.settings import ObdConfig
from agent.source_settings import BusSpec

__all__ = ["Findings", "Inputs", "UsageError", "add_vehicle_arguments", "load_inputs"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem or warning: where (a file, with the monitor id) and what (path: message)."""

    source: str
    message: str
    path: str | None = None
    monitor: str | None = None

    def __str__(self) -> str:
        where = f"{self.source} ({self.monitor})" if self.monitor else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_json(self) -> dict[str, str | None]:
        return {
            "source": self.source,
            "monitor": self.monitor,
            "path": self.path,
            "message": self.message,
        }


@dataclass(slots=True)
class Findings:
    """What a reading found. ``unusable``: the configuration or vehicle could not be loaded
    (exit 2, as ``run`` would); problems of monitors alone give exit 1."""

    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    unusable: bool = False

    def warn_lines(self) -> list[str]:
        return [f"warning: {w}" for w in self.warnings]

    def exit_code(self) -> int:
        if self.unusable:
            return EXIT_USAGE
        return EXIT_PROBLEMS if self.problems else EXIT_OK


@dataclass(frozen=True, slots=True)
class Inputs:
    vehicle: Vehicle
    vin: str | None
    fleet_id: str | None
    monitors_files: tuple[Path, ...]
    described: dict[str, object]  # the vehicle as --json reports it (DBCs, map, assumed)
    obd: tuple[ObdConfig, ...] = ()  # [[obd]] buses: their names join the catalog


def add_vehicle_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "vehicle", "default: the demo vehicle (dbc/demo_vehicle.dbc and its map), said on stderr"
    )
    group.add_argument("--config", type=Path, metavar="FILE", help="agent.toml (buses, DBCs, VIN)")
    group.add_argument(
        "--dbc", type=Path, action="append", default=[], metavar="FILE", help="DBC file (repeat)"
    )
    group.add_argument("--map", type=Path, metavar="FILE", help="signal map TOML for --dbc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_vehicle_arguments(parser)
    parser.add_argument(
        "--monitors",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="monitors JSON: one object or an array (repeat)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (for CI pipelines)"
    )


def require_readable(paths: list[Path | None]) -> None:
    for path in paths:
        if path is None:
            continue
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"cannot read {path}")


def _buses(args: argparse.Namespace, config_buses: list[BusSpec] | None) -> list[BusSpec]:
    if args.dbc:
        return [BusSpec("can0", tuple(args.dbc), args.map)]
    if config_buses is not None:
        return config_buses
    if args.map is not None:
        return [BusSpec("can0", (DEMO_DBC,), args.map)]
    return demo_buses()


def assumed_vehicle(args: argparse.Namespace, command: str) -> str | None:
    """The line saying which vehicle a command assumes without ``--config`` (None with one)."""
    if args.config is not None:
        return None
    dbcs = ", ".join(str(p) for p in args.dbc) if args.dbc else f"{DEMO_DBC} (the demo vehicle)"
    signal_map = args.map or (None if args.dbc else DEMO_MAP)
    mapped = f"signal map {signal_map}" if signal_map else "no signal map (DBC names only)"
    return f"{command}: no --config: assuming DBC {dbcs}, {mapped}"


def load_inputs(args: argparse.Namespace, findings: Findings, command: str) -> Inputs | None:
    """The vehicle (and VIN, monitors files) from --config/--dbc/--map, else the demo vehicle.
    Problems of the configuration or vehicle go to ``findings`` (unusable); unreadable files
    raise UsageError."""
    require_readable([args.config, *args.dbc, args.map, *getattr(args, "monitors", [])])
    config = None
    if args.config is not None:
        from agent.config import load_config  # noqa: PLC0415 - only with --config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            findings.problems += [_finding(str(args.config), p) for p in exc.problems]
            findings.unusable = True
            return None
    buses = _buses(args, config.bus_specs() if config is not None else None)
    if (note := assumed_vehicle(args, command)) is not None:
        print(note, file=sys.stderr)
    try:
        vehicle = load_vehicle(buses)
    except DbcError as exc:
        findings.problems.append(Finding("vehicle", str(exc)))
        findings.unusable = True
        return None
    findings.warnings += [Finding("vehicle", w) for w in vehicle.warnings]
    files = tuple(getattr(args, "monitors", []) or [])
    if config is not None and config.monitors_file is not None and not files:
        files = (config.monitors_file,)
    described: dict[str, object] = {
        "assumed": args.config is None and not args.dbc,
        "buses": {
            b.name: {
                "dbc": [str(p) for p in b.dbc_files],
                "signalMap": str(b.signal_map) if b.signal_map else None,
            }
            for b in buses
        },
    }
    vin = config.vin if config is not None else None
    obd = config.obd if config is not None else ()
    return Inputs(vehicle, vin, config.fleet_id if config else None, files, described, obd)


def _finding(source: str, problem: Problem, monitor: str | None = None) -> Finding:
    return Finding(source, problem.message, problem.path, monitor)


def check_monitors(inputs: Inputs, findings: Findings) -> list[Checked]:
    entries: list[FileEntry] = []
    for path in inputs.monitors_files:
        try:
            entries += read_monitors_file(path)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        except MonitorError as exc:
            findings.problems += [Finding(str(path), p.message.removeprefix(f"{path}: "),
                                          p.path) for p in exc.problems]  # fmt: skip
    catalog = ObdCatalog(inputs.vehicle.catalog) if inputs.obd else inputs.vehicle.catalog
    checked = check_definitions(entries, catalog)
    for item in checked:
        source, ident = item.entry.source, _ident(item)
        findings.problems += [_finding(source, p, ident) for p in item.parse.problems]
        findings.warnings += [_finding(source, w, ident) for w in item.parse.warnings]
    return checked


def _obd_costs(inputs: Inputs, checked: list[Checked]) -> list[tuple[Checked, str, Cost]]:
    """What each valid monitor costs on each [[obd]] bus (those that cost anything)."""
    found = []
    for item in checked:
        if item.parse.monitor is None:
            continue
        names = monitor_names(item.parse.monitor)
        for bus in inputs.obd:
            cost = obd_cost(names, inputs.vehicle.catalog, bus)
            if cost.per_minute:
                found.append((item, bus.name, cost))
    return found


def _print_obd_costs(inputs: Inputs, checked: list[Checked]) -> None:
    """The costs, in requests per minute (stderr)."""
    for item, bus, cost in _obd_costs(inputs, checked):
        pids = " ".join(f"{p:02X}" for p in cost.pids) or "none"
        codes = ", fault codes" if cost.codes else ""
        print(f"obd: {_label(item)}: bus {bus}: PIDs {pids}{codes}: "
              f"{cost.per_minute:g} request(s)/min per ECU", file=sys.stderr)  # fmt: skip


def _obd_costs_json(inputs: Inputs | None, checked: list[Checked]) -> list[dict[str, object]]:
    """``check --json``'s ``obdCosts``: the lines the text mode prints, as objects."""
    if inputs is None:
        return []
    return [
        {
            "source": item.entry.source,
            "id": _ident(item),
            "bus": bus,
            "pids": [f"{p:02X}" for p in cost.pids],
            "faultCodes": cost.codes,
            "requestsPerMinute": cost.per_minute,
            "per": "ECU",
        }
        for item, bus, cost in _obd_costs(inputs, checked)
    ]


def _label(item: Checked) -> str:
    ident = _ident(item)
    return f"{item.entry.source} ({ident})" if ident else item.entry.source


def _ident(item: Checked) -> str | None:
    monitor = item.parse.monitor
    obj = item.entry.obj
    ident = monitor.id if monitor is not None else obj.get("id") if isinstance(obj, dict) else None
    return ident if isinstance(ident, str) else None


def execute(args: argparse.Namespace) -> int:
    if args.config is None and not args.dbc and args.map is None and not args.monitors:
        raise UsageError(
            "nothing to check: give --config, --monitors, or --dbc (with --map)", usage=True
        )
    findings = Findings()
    inputs = load_inputs(args, findings, "check")
    checked = check_monitors(inputs, findings) if inputs is not None else []
    valid = sum(1 for c in checked if c.parse.ok)
    code = findings.exit_code()
    if args.json:
        document = {
            "ok": code == EXIT_OK,
            "exitCode": code,
            "vehicle": inputs.described if inputs is not None else None,
            "monitors": [
                {"source": c.entry.source, "id": _ident(c), "valid": c.parse.ok} for c in checked
            ],
            "problems": [p.as_json() for p in findings.problems],
            "warnings": [w.as_json() for w in findings.warnings],
            "obdCosts": _obd_costs_json(inputs, checked),
        }
        print(json.dumps(document, indent=2))
        return code
    for line in findings.warn_lines():
        print(line, file=sys.stderr)
    for problem in findings.problems:
        print(problem)
    if inputs is not None:
        _print_obd_costs(inputs, checked)
    print(
        f"check: {valid} of {len(checked)} monitor(s) valid, {len(findings.problems)} problem(s)",
        file=sys.stderr,
    )
    return code
