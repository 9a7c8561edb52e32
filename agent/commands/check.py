"""``edgemon-agent check``: validate DBCs, signal map and monitors together.

    edgemon-agent check [--config FILE] [--dbc FILE]... [--map FILE] [--monitors FILE]...

Problems go to stdout, one per line (``SOURCE: $.json.path: message``); warnings and the summary
to stderr. Exit 0 when everything is valid, 1 with every problem listed, 2 for unusable
arguments or unreadable files. Without ``--config`` or ``--dbc``: the demo vehicle of ``dbc/``.
It judges what the vehicle evaluates: problems of the callback part (``subscribeParam``) are
warnings here, since the backend delivers webhooks and judges them.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.can.dbc import DEMO_DBC, Vehicle, demo_buses, load_vehicle
from agent.errors import ConfigError, DbcError, EdgemonError, MonitorError
from agent.monitors.loading import Checked, FileEntry, check_definitions, read_monitors_file
from agent.obd.cost import monitor_names, obd_cost
from agent.obd.names import ObdCatalog
from agent.obd.settings import ObdConfig
from agent.source_settings import BusSpec


class UsageError(EdgemonError):
    """Unusable arguments or unreadable files: ``edgemon-agent`` prints one line, exit 2."""


@dataclass(frozen=True, slots=True)
class Inputs:
    vehicle: Vehicle
    vin: str | None
    fleet_id: str | None
    monitors_files: tuple[Path, ...]
    obd: tuple[ObdConfig, ...] = ()  # [[obd]] buses: their names join the catalog


def add_vehicle_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="agent.toml (buses, DBCs, VIN)")
    parser.add_argument(
        "--dbc", type=Path, action="append", default=[], metavar="FILE", help="DBC file (repeat)"
    )
    parser.add_argument("--map", type=Path, metavar="FILE", help="signal map TOML for --dbc")


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


def require_readable(paths: list[Path | None]) -> None:
    for path in paths:
        if path is None:
            continue
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UsageError(f"cannot read {path}")


def load_inputs(args: argparse.Namespace, problems: list[str]) -> Inputs | None:
    """The vehicle (and VIN, monitors files) from --config/--dbc/--map, else the demo vehicle.
    Content problems are appended to ``problems`` (exit 1); unreadable files raise UsageError."""
    require_readable([args.config, *args.dbc, args.map, *getattr(args, "monitors", [])])
    config = None
    if args.config is not None:
        from agent.config import load_config  # noqa: PLC0415 - only with --config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            problems += [f"{args.config}: {p}" for p in exc.problems]
            return None
    if args.dbc:
        buses = [BusSpec("can0", tuple(args.dbc), args.map)]
    elif config is not None:
        buses = config.bus_specs()
    elif args.map is not None:
        buses = [BusSpec("can0", (DEMO_DBC,), args.map)]
    else:
        buses = demo_buses()
    try:
        vehicle = load_vehicle(buses)
    except DbcError as exc:
        problems.append(str(exc))
        return None
    for warning in vehicle.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = tuple(getattr(args, "monitors", []) or [])
    if config is not None and config.monitors_file is not None and not files:
        files = (config.monitors_file,)
    vin = config.vin if config is not None else None
    obd = config.obd if config is not None else ()
    return Inputs(vehicle, vin, config.fleet_id if config else None, files, obd)


def check_monitors(inputs: Inputs, problems: list[str]) -> list[Checked]:
    entries: list[FileEntry] = []
    for path in inputs.monitors_files:
        try:
            entries += read_monitors_file(path)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
        except MonitorError as exc:
            problems += [p.message for p in exc.problems]
    catalog = ObdCatalog(inputs.vehicle.catalog) if inputs.obd else inputs.vehicle.catalog
    checked = check_definitions(entries, catalog)
    for item in checked:
        label = _label(item)
        problems += [f"{label}: {p}" for p in item.parse.problems]
        for warning in item.parse.warnings:
            print(f"warning: {label}: {warning}", file=sys.stderr)
    return checked


def _print_obd_costs(inputs: Inputs, checked: list[Checked]) -> None:
    """What each valid monitor costs on each [[obd]] bus, in requests per minute (stderr)."""
    for item in checked:
        if item.parse.monitor is None:
            continue
        names = monitor_names(item.parse.monitor)
        for bus in inputs.obd:
            cost = obd_cost(names, inputs.vehicle.catalog, bus)
            if cost.per_minute:
                pids = " ".join(f"{p:02X}" for p in cost.pids) or "none"
                codes = ", fault codes" if cost.codes else ""
                print(f"obd: {_label(item)}: bus {bus.name}: PIDs {pids}{codes}: "
                      f"{cost.per_minute:g} request(s)/min per ECU", file=sys.stderr)  # fmt: skip


def _label(item: Checked) -> str:
    monitor = item.parse.monitor
    obj = item.entry.obj
    ident = monitor.id if monitor is not None else obj.get("id") if isinstance(obj, dict) else None
    return f"{item.entry.source} ({ident})" if ident else item.entry.source


def execute(args: argparse.Namespace) -> int:
    problems: list[str] = []
    inputs = load_inputs(args, problems)
    checked = check_monitors(inputs, problems) if inputs is not None else []
    for line in problems:
        print(line)
    valid = sum(1 for c in checked if c.parse.ok)
    if inputs is not None:
        _print_obd_costs(inputs, checked)
    print(
        f"check: {valid} of {len(checked)} monitor(s) valid, {len(problems)} problem(s)",
        file=sys.stderr,
    )
    return 1 if problems else 0
