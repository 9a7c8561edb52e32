"""``edgemon-agent simulate``: drive a scenario onto CAN and NMEA outputs (test benches, demo).

Examples::

    edgemon-agent simulate --scenario docs/scenarios/night-depot-exit.toml \\
        --can-interface socketcan --can-channel vcan0 --nmea-pty /tmp/gps0
    edgemon-agent simulate --scenario drive.toml --fast --can-log drive.log --nmea drive.nmea
    edgemon-agent simulate --scenario drive.toml --start now \\
        --can-socketcand 127.0.0.1:29536 --nmea-tcp 127.0.0.1:29537 --wait-clients 30

In real time (the default) frames sent live carry the wall-clock send time, as a kernel would
stamp them, while NMEA keeps the scenario's own date and time (GPS time). ``--fast`` sends
everything at once with the scenario's timestamps (for logs and files).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.can.dbc import DEMO_DBC, DEMO_MAP
from agent.errors import ConfigError, Problem
from agent.model import Frame
from agent.simulate import (
    FrameBuilder,
    Simulation,
    load_database,
    load_scenario,
    load_signal_map,
    start_now,
)
from agent.simulate.scenario import Scenario, latest_occurrence
from agent.simulate.sinks import (
    BusSink,
    FileLineSink,
    FrameSink,
    LineSink,
    LogSink,
    PtyLineSink,
    SerialLineSink,
    SocketcandServer,
    TcpLineServer,
)

if TYPE_CHECKING:
    from agent.obd.twin import TwinRunner


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", required=True, type=Path, help="scenario .toml or .json")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument(
        "--start",
        help="override the start: 'now', an ISO date-time, or a time of day (latest occurrence)",
    )
    parser.add_argument("--duration", type=float, help="override the duration (seconds)")
    parser.add_argument("--fast", action="store_true", help="no pacing: as fast as possible")
    parser.add_argument("--speed", type=float, default=1.0, help="time factor in real time")
    parser.add_argument("--dbc", type=Path, action="append", help="DBC file(s); default: demo")
    parser.add_argument("--map", type=Path, help="signal map TOML; default: the demo map")
    can_group = parser.add_argument_group("CAN outputs")
    can_group.add_argument("--can-interface", help="python-can interface (socketcan, virtual...)")
    can_group.add_argument("--can-channel", default="vcan0", help="python-can channel")
    can_group.add_argument("--can-bitrate", type=int, help="bitrate for real adapters")
    can_group.add_argument("--can-fd", action="store_true", help="open the bus in CAN FD mode")
    can_group.add_argument("--can-log", type=Path, help="write a log (.log candump, .asc, .blf)")
    can_group.add_argument(
        "--can-socketcand", type=_address, metavar="HOST:PORT", help="serve as socketcand"
    )
    can_group.add_argument(
        "--obd-twin", action="store_true",
        help="also answer OBD-II requests on --can-interface/--can-channel (docs/obd.md)",
    )  # fmt: skip
    gps_group = parser.add_argument_group("NMEA outputs")
    gps_group.add_argument("--nmea", help="file, serial device or pyserial URL")
    gps_group.add_argument("--nmea-baudrate", type=int, default=9600)
    gps_group.add_argument("--nmea-pty", type=Path, metavar="LINK", help="create a pty at LINK")
    gps_group.add_argument(
        "--nmea-tcp", type=_address, metavar="HOST:PORT", help="serve NMEA over TCP"
    )
    parser.add_argument(
        "--wait-clients", type=float, default=0.0, metavar="S",
        help="wait up to S seconds for a client on every TCP output before driving",
    )  # fmt: skip


def _start_override(text: str, scenario: Scenario, now: float) -> Scenario:
    """``--start``: 'now', an ISO date-time, or a time of day (its latest occurrence)."""
    if text == "now":
        return start_now(scenario, now)
    zone = scenario.start.tzinfo
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            clock = dt_time.fromisoformat(text)
        except ValueError:
            problem = Problem("--start", f"not 'now', an ISO date-time nor a time of day: {text!r}")
            raise ConfigError([problem]) from None
        moment = latest_occurrence(clock, ZoneInfo(scenario.timezone), now)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return replace(scenario, start=moment)


def _scenario_simulation(args: argparse.Namespace) -> Simulation:
    now = time.time()
    scenario = load_scenario(args.scenario, now)
    if args.start:
        scenario = _start_override(args.start, scenario, now)
    if args.duration:
        scenario = replace(scenario, duration=args.duration)
    database = load_database(args.dbc or [DEMO_DBC])
    signal_map = args.map or (None if args.dbc else DEMO_MAP)
    builder = FrameBuilder(database, load_signal_map(signal_map) if signal_map else None)
    return Simulation(scenario, builder, seed=args.seed)


def _open_sinks(
    args: argparse.Namespace, frames: list[FrameSink], lines: list[LineSink]
) -> list[SocketcandServer | TcpLineServer]:
    servers: list[SocketcandServer | TcpLineServer] = []
    if args.can_interface:
        options: dict[str, object] = {"fd": True} if args.can_fd else {}
        if args.can_bitrate:
            options["bitrate"] = args.can_bitrate
        frames.append(BusSink(args.can_interface, args.can_channel, **options))
    if args.can_log:
        frames.append(LogSink(args.can_log))
    if args.can_socketcand:
        host, port = args.can_socketcand
        server = SocketcandServer(host, port, channel=args.can_channel)
        frames.append(server)
        servers.append(server)
        print(f"socketcand (CAN) on {server.address[0]}:{server.address[1]}", flush=True)
    if args.nmea:
        is_file = "://" not in args.nmea and not Path(args.nmea).is_char_device()
        lines.append(
            FileLineSink(Path(args.nmea))
            if is_file
            else SerialLineSink(args.nmea, args.nmea_baudrate)
        )
    if args.nmea_pty:
        pty = PtyLineSink(args.nmea_pty)
        lines.append(pty)
        print(f"NMEA pty {pty.path} linked at {pty.link}", flush=True)
    if args.nmea_tcp:
        tcp = TcpLineServer(*args.nmea_tcp)
        lines.append(tcp)
        servers.append(tcp)
        print(f"NMEA on tcp {tcp.address[0]}:{tcp.address[1]}", flush=True)
    return servers


def _wait_for_clients(servers: list[SocketcandServer | TcpLineServer], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(s.clients() == 0 for s in servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    if any(s.clients() == 0 for s in servers):
        print("simulate: no client on every output yet; driving anyway", file=sys.stderr)


def _drive(
    sim: Simulation, frames: list[FrameSink], lines: list[LineSink], pace: float | None
) -> tuple[int, int, float]:
    """Send everything; ``pace`` = time factor, or None for as fast as possible."""
    start = sim.scenario.start_epoch
    wall_epoch, wall = time.time(), time.monotonic()
    sent_frames = sent_lines = 0
    for t, item in sim.items():
        offset = (t - start) / (pace or 1.0)
        if pace is not None:
            delay = offset - (time.monotonic() - wall)
            if delay > 0:
                time.sleep(delay)
        if isinstance(item, Frame):
            live = item if pace is None else replace(item, timestamp=wall_epoch + offset)
            for sink in frames:
                sink.send(item if isinstance(sink, LogSink) else live)
            sent_frames += 1
        else:
            for line_sink in lines:
                line_sink.send(item)
            sent_lines += 1
    return sent_frames, sent_lines, time.monotonic() - wall


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _start_obd_twin(args: argparse.Namespace) -> TwinRunner:
    """The demo car's ECUs answering OBD-II beside the drive (whose frames are the car's own
    traffic: the twin sends none of its own)."""
    import can  # noqa: PLC0415

    from agent.obd.addressing import Addressing  # noqa: PLC0415
    from agent.obd.twin import TwinRunner, demo_car  # noqa: PLC0415

    if not args.can_interface:
        problem = Problem("--obd-twin", "answers on --can-interface/--can-channel: name them")
        raise ConfigError([problem])
    try:
        bus = can.Bus(interface=args.can_interface, channel=args.can_channel)
    except (can.CanError, OSError, ValueError) as exc:
        problem = Problem("--obd-twin", f"cannot open {args.can_channel}: {exc}")
        raise ConfigError([problem]) from exc
    return TwinRunner(bus, demo_car(Addressing(False)), organic=False).start()


def execute(args: argparse.Namespace) -> int:
    sim = _scenario_simulation(args)
    signal.signal(signal.SIGTERM, _terminate)
    frames: list[FrameSink] = []
    lines: list[LineSink] = []
    twin = _start_obd_twin(args) if args.obd_twin else None
    try:
        servers = _open_sinks(args, frames, lines)
        if servers and args.wait_clients > 0:
            _wait_for_clients(servers, args.wait_clients)
        scenario = sim.scenario
        print(
            f"simulating {scenario.name!r}: {scenario.duration:g} s from "
            f"{scenario.start.isoformat()} ({scenario.timezone}), seed {sim.seed}",
            flush=True,
        )
        pace = None if args.fast else max(args.speed, 1e-3)
        sent_frames, sent_lines, took = _drive(sim, frames, lines, pace)
    finally:
        sinks: list[FrameSink | LineSink] = [*frames, *lines]
        for sink in sinks:
            sink.close()
        if twin is not None:
            twin.stop()
            twin.mux.bus.shutdown()
    dropped = {k: v for s in sinks for k, v in s.counters.items() if "drop" in k}
    print(
        f"sent {sent_frames} CAN frames and {sent_lines} NMEA lines in {took:.1f} s"
        + (f"; {dropped}" if any(dropped.values()) else ""),
        flush=True,
    )
    return 0
