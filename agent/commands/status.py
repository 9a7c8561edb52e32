"""``edgemon-agent status``: a live view of the running agent in the terminal, like ``cantools
monitor``: the signals its monitors read (value, age, stale), each monitor's truth and its
triggers', the outbox depth, the broker link and the CAN buses.

    edgemon-agent status [--config FILE | --file status.json] [--once | --json] [--interval S]

It reads the live view the daemon rewrites every second (``agent.live``): ``--file``, else
``$RUNTIME_DIRECTORY/status.json``, ``/run/edgemon/status.json`` (the systemd unit's runtime
directory) or ``status.json`` in the configuration's ``state_dir``, the first that exists.
The live mode redraws the screen every ``--interval`` seconds until Ctrl-C (exit 0);
``--once`` prints one view, ``--json`` the document itself (for scripts). Exit 2 when no live
view can be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agent.commands import EXIT_OK
from agent.errors import UsageError
from agent.live import LIVE_FILE, LIVE_PERIOD, live_path, read_snapshot

SYSTEMD_RUNTIME = Path("/run/edgemon")
OLD_AFTER = 5 * LIVE_PERIOD  # a view not rewritten for this long: the agent is not running
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen (ANSI)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", type=Path, metavar="FILE", help="the agent's agent.toml")
    where.add_argument("--file", type=Path, metavar="PATH", help="the live view file itself")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--once", action="store_true", help="print one view and exit")
    how.add_argument("--json", action="store_true", help="print the live view's JSON and exit")
    parser.add_argument(
        "--interval", type=float, default=LIVE_PERIOD, metavar="S", help="seconds between redraws"
    )


def candidates(args: argparse.Namespace) -> list[Path]:
    """Where the live view may be, in the order tried."""
    if args.file is not None:
        return [args.file]
    found: list[Path] = []
    if os.environ.get("RUNTIME_DIRECTORY"):
        found.append(live_path(Path("."), os.environ))
    found.append(SYSTEMD_RUNTIME / LIVE_FILE)
    if args.config is not None:
        from agent.config import load_config  # noqa: PLC0415 - only with --config

        found.append(load_config(args.config).state_dir / LIVE_FILE)
    return found


def _locate(args: argparse.Namespace) -> Path:
    paths = candidates(args)
    for path in paths:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in paths)
    hint = "" if args.config or args.file else "; give --config agent.toml or --file"
    raise UsageError(f"no live view found (tried {tried}): is the agent running?{hint}")


def _truth(value: object) -> str:
    return "unknown" if value is None else "true" if value else "false"


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def render(body: dict[str, Any], written_ago: float) -> list[str]:
    """The view as lines (pure)."""
    broker = body.get("broker")
    link = "connected" if _field(broker, "connected") else "NOT CONNECTED"
    old = f"  (not rewritten for {written_ago:.0f} s: is the agent running?)"
    lines = [
        f"edgemon agent {body.get('vin', '?')}   at {body.get('at', '?')}"
        + (old if written_ago > OLD_AFTER else ""),
        f"broker {_field(broker, 'address') or '?'} {link}   outbox {body.get('outboxDepth', '?')} "
        f"event(s)   clock {body.get('clock', '?')}",
    ]
    buses = body.get("buses")
    for name, bus in sorted(buses.items() if isinstance(buses, dict) else []):
        state = "quiet" if _field(bus, "quiet") else "active"
        age = _seconds(_field(bus, "lastFrameAgeS"))
        lines.append(f"bus {name} {state}" + (f" (last frame {age} ago)" if age else ""))
    signals = body.get("signals")
    lines += ["", f"{'SIGNAL':<44} {'VALUE':>14} {'AGE':>9}"]
    for name, cell in sorted(signals.items() if isinstance(signals, dict) else []):
        age_text = _seconds(_field(cell, "ageSeconds")) or "never"
        stale = "  stale" if _field(cell, "stale") else ""
        lines.append(f"{name:<44} {_value(_field(cell, 'value')):>14} {age_text:>9}{stale}")
    lines += ["", f"{'MONITOR':<24} {'TRUTH':<8} TRIGGERS   (last event)"]
    monitors = body.get("monitors")
    for ident, monitor in sorted(monitors.items() if isinstance(monitors, dict) else []):
        truth = "paused" if _field(monitor, "paused") else _truth(_field(monitor, "truth"))
        listed = _field(monitor, "triggers")
        pairs = listed.items() if isinstance(listed, dict) else []
        triggers = " ".join(f"{name}={_truth(value)}" for name, value in pairs)
        last = _field(monitor, "lastEvent")
        lines.append(f"{ident:<24} {truth:<8} {triggers}" + (f"   ({last})" if last else ""))
        lines.append(f"{'':<24} {'':<8} {_field(monitor, 'boolExp') or ''}")
    return lines


def _field(table: object, key: str) -> object:
    """``table[key]`` when ``table`` is an object (a file read may hold anything), else None."""
    return table.get(key) if isinstance(table, dict) else None


def _seconds(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return f"{value:.1f} s"


def _show(path: Path, *, clear: bool) -> None:
    body = read_snapshot(path)
    try:
        ago = max(0.0, time.time() - path.stat().st_mtime)
    except OSError:
        ago = 0.0
    text = "\n".join(render(body, ago))
    sys.stdout.write((CLEAR if clear else "") + text + "\n")
    sys.stdout.flush()


def execute(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise UsageError("--interval must be positive", usage=True)
    path = _locate(args)
    if args.json:
        print(json.dumps(read_snapshot(path), indent=2))
        return EXIT_OK
    if args.once:
        _show(path, clear=False)
        return EXIT_OK
    clear = sys.stdout.isatty()
    try:
        while True:
            _show(path, clear=clear)
            time.sleep(args.interval)
    except KeyboardInterrupt:  # Ctrl-C ends the live view: a normal exit
        sys.stdout.write("\n")
        return EXIT_OK
