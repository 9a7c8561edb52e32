"""``edgemon-agent obd scan``: which ECUs answer, the VIN, the supported PIDs and fault codes.

    edgemon-agent obd scan --channel can0 [--interface socketcan] [--addressing 11|29]
                           [--transport python|kernel] [--json]
    edgemon-agent obd scan --config agent.toml [--bus NAME]
    edgemon-agent obd scan ... --record FILE.log     # the session's frames, candump format
    edgemon-agent obd scan --log FILE.log [--json]   # offline, from a recorded session
    edgemon-agent obd twin --channel vcan0 [--interface socketcan] [--addressing 11|29]

``twin`` answers as the demo car would (``agent.obd.twin.demo_car``) until interrupted: a
bench without a car, for ``scan`` and the agent's ``[[obd]]``.

Safe for a parked car: it first listens (``--listen``, 1 s) and sends nothing when the bus is
silent (the car asleep), unless ``--force`` says the car is known to be awake (a gateway that
shows no traffic). Exit 0 with a scan, 1 when the bus is silent or no ECU answered.

``--log`` sends nothing: the same client asks a ``RecordedLink`` that answers each request
with what the log recorded (``agent.obd.recorded``); addressing is taken from the log.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from agent.errors import ConfigError, Problem, UsageError
from agent.obd.client import ObdClient, Scan
from agent.obd.pids import PIDS
from agent.obd.settings import ObdConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="obd_command", required=True, metavar="ACTION")
    scan = sub.add_parser("scan", help="list ECUs, VIN, supported PIDs and fault codes")
    scan.add_argument("--config", type=Path, metavar="FILE", help="agent.toml with [[obd]]")
    scan.add_argument("--bus", metavar="NAME", help="which [[obd]] of --config (default: first)")
    scan.add_argument("--channel", help="CAN channel (can0, vcan0...)")
    scan.add_argument("--interface", default="socketcan", help="python-can interface")
    scan.add_argument("--addressing", choices=("11", "29"), help="11 (default) or 29-bit ids")
    scan.add_argument("--transport", choices=("python", "kernel"), default="python")
    scan.add_argument("--timeout", type=float, default=0.2, help="seconds to wait for answers")
    scan.add_argument("--listen", type=float, default=1.0, help="seconds to listen first")
    scan.add_argument("--force", action="store_true", help="send even on a silent bus")
    scan.add_argument("--json", action="store_true", help="JSON on stdout")
    scan.add_argument(
        "--record", type=Path, metavar="FILE", help="write the session's frames (candump -l)"
    )
    scan.add_argument(
        "--log", type=Path, metavar="FILE", help="scan a recorded session offline (no bus)"
    )
    twin = sub.add_parser("twin", help="answer OBD-II requests as the demo car (a bench)")
    twin.add_argument("--channel", required=True, help="CAN channel (vcan0...)")
    twin.add_argument("--interface", default="socketcan", help="python-can interface")
    twin.add_argument("--addressing", choices=("11", "29"), default="11")
    twin.add_argument("--seconds", type=float, default=0.0, help="stop after this (0: never)")


def _settings(args: argparse.Namespace) -> ObdConfig:
    if args.config is not None:
        from agent.config import load_config  # noqa: PLC0415

        buses = load_config(args.config).obd
        chosen = [b for b in buses if args.bus in (None, b.name)]
        if not chosen:
            raise ConfigError(
                [Problem("$.obd", f"no [[obd]] bus {args.bus or ''} in {args.config}")]
            )
        return replace(chosen[0], timeout=args.timeout)
    if not args.channel:
        raise ConfigError([Problem("--channel", "required without --config")])
    return ObdConfig(
        name=args.channel,
        channel=args.channel,
        interface=args.interface,
        extended=args.addressing == "29",
        transport=args.transport,
        timeout=args.timeout,
    )


def execute(args: argparse.Namespace) -> int:
    if args.obd_command == "twin":
        return _twin(args)
    if args.log is not None:
        return _offline(args)
    from agent.obd.recorded import CandumpRecorder  # noqa: PLC0415
    from agent.obd.service import open_link  # noqa: PLC0415

    settings = _settings(args)
    if args.record is not None and settings.transport == "kernel":
        raise UsageError("--record needs transport python (the kernel's ISO-TP hides the frames)")
    recorder = CandumpRecorder(args.record, settings.channel) if args.record else None
    try:
        link = open_link(settings, tap=recorder.tap if recorder is not None else None)
    except BaseException:
        if recorder is not None:
            recorder.close()
        raise
    try:
        link.listen(args.listen)
        heard = (
            link.last_organic is not None and time.monotonic() - link.last_organic < args.listen + 1
        )
        if not heard and not args.force:
            print(
                f"obd scan: no traffic on {settings.channel} for {args.listen:g} s: the car "
                "looks asleep, nothing sent (--force to send anyway)",
                file=sys.stderr,
            )
            return 1
        scan = ObdClient(link, timeout=settings.timeout).scan()
    finally:
        link.close()
        if recorder is not None:
            recorder.close()
            print(f"obd scan: {recorder.counters['frames']} frame(s) recorded in {args.record}",
                  file=sys.stderr)  # fmt: skip
    print(json.dumps(scan_json(scan), indent=2) if args.json else scan_text(scan))
    return 0 if scan.ecus else 1


def _offline(args: argparse.Namespace) -> int:
    """``scan --log``: the client's scan, answered by the recording."""
    from agent.can.source import read_log  # noqa: PLC0415
    from agent.obd.addressing import Addressing  # noqa: PLC0415
    from agent.obd.recorded import (  # noqa: PLC0415
        MessageReader,
        RecordedLink,
        guess_addressing,
        messages,
    )

    if args.record is not None or args.channel or args.config is not None:
        raise UsageError("--log scans a recording: no --record, --channel or --config with it")
    counts: dict[str, int] = {}
    addressing = (
        Addressing(args.addressing == "29")
        if args.addressing
        else guess_addressing(read_log(args.log, "obd"))
    )
    reader = MessageReader(addressing)
    link = RecordedLink(messages(read_log(args.log, "obd", counts), reader))
    scan = ObdClient(link, timeout=args.timeout, clock=link.clock).scan()
    print(
        f"obd scan: {args.log}: {counts.get('frames', 0)} frame(s), {reader.counters['messages']} "
        f"message(s), {link.exchanges} request(s) recorded, {reader.counters['broken']} broken",
        file=sys.stderr,
    )
    print(json.dumps(scan_json(scan), indent=2) if args.json else scan_text(scan))
    return 0 if scan.ecus else 1


def scan_json(scan: Scan) -> dict[str, object]:
    return {
        "vin": scan.vin,
        "ecus": [
            {
                "id": e.ecu.name,
                "requestId": f"{e.ecu.request_id:X}",
                "name": e.name,
                "pids": [f"{p:02X}" for p in sorted(e.pids)],
                "dataNames": sorted(PIDS[p].data_name for p in e.pids if p in PIDS),
                "confirmed": list(e.confirmed),
                "pending": list(e.pending),
                "permanent": list(e.permanent),
            }
            for e in scan.ecus
        ],
        "problems": list(scan.problems),
    }


def scan_text(scan: Scan) -> str:
    lines = [f"VIN {scan.vin or 'unknown'}; {len(scan.ecus)} ECU(s)"]
    for e in scan.ecus:
        lines.append(f"ECU {e.ecu.name} (asked at {e.ecu.request_id:X}) {e.name or ''}".rstrip())
        known = [f"{p:02X} {PIDS[p].key}" for p in sorted(e.pids) if p in PIDS]
        other = [f"{p:02X}" for p in sorted(e.pids) if p not in PIDS]
        lines.append(f"  PIDs: {', '.join(known + other) or 'none'}")
        for label, codes in (("confirmed", e.confirmed), ("pending", e.pending),
                             ("permanent", e.permanent)):  # fmt: skip
            lines.append(f"  {label} codes: {', '.join(codes) or 'none'}")
    lines += [f"problem: {p}" for p in scan.problems]
    return "\n".join(lines)


def _twin(args: argparse.Namespace) -> int:
    import can  # noqa: PLC0415

    from agent.obd.addressing import Addressing  # noqa: PLC0415
    from agent.obd.twin import TwinRunner, demo_car  # noqa: PLC0415

    try:
        bus = can.Bus(interface=args.interface, channel=args.channel)
    except (can.CanError, OSError, ValueError) as exc:
        raise ConfigError([Problem("--channel", f"cannot open {args.channel}: {exc}")]) from exc
    runner = TwinRunner(bus, demo_car(Addressing(args.addressing == "29"))).start()
    print(f"obd twin: answering on {args.channel}", file=sys.stderr, flush=True)
    try:
        end = time.monotonic() + args.seconds if args.seconds > 0 else None
        pause = threading.Event()
        while end is None or time.monotonic() < end:
            pause.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        bus.shutdown()
    return 0
