"""``edgemon-agent replay``: run monitors over recorded CAN logs and an NMEA file.

    edgemon-agent replay [--config FILE] [--dbc FILE]... [--map FILE] [--can LOG]...
                         [--nmea FILE] [--obd LOG] --monitors FILE [--vin VIN]

Deterministic, on the recording's own clock: frames and fixes are merged by timestamp, and the
engine's deadlines (time windows, dwell, reminders, staleness) run between inputs at their own
time: the daemon's pipeline step (``agent.pipeline``), driven by ``run_recording``. One JSON
event per line on stdout (the wire format of ``agent.wire``); event ids are UUIDv7-shaped and
reproducible (the event time plus a seeded counter), so the same recording gives byte-identical
output. A summary (frames, fixes, skips by reason, events) goes to stderr.
``--can BUS=LOG`` puts a log on a named bus of the configuration (default: the first bus).
``--obd LOG``: a recorded OBD-II session (candump log of requests and answers, as ``obd scan
--record`` or candump write it): its answers become the values the live poller would give
(``agent.obd.recorded``), so monitors on OBD-II names run offline. CAN first, as live: a name
a ``[[can]]`` bus decodes is not taken from the OBD-II answers.

``--trace`` prints, instead of the events, what the monitors saw and decided: the decoded value
of every signal they read at each change, the fixes (for zone monitors), each trigger's and
expression's truth and the events (``--trace-format json``: JSON lines; ``agent.trace``).
``--plot FILE.png`` draws the same (``agent.plot``, the ``plot`` extra).
Warnings: a zone monitor without positions (no ``--nmea``, or no fix with one).
Exit 0; 1 when a monitor is invalid (every problem listed); 2 for unusable arguments, vehicle
or files, and without any input (no ``--can`` nor ``--nmea``).
"""

from __future__ import annotations

import argparse
import heapq
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from agent.can.decode import Decoder
from agent.can.source import read_log
from agent.commands import EXIT_OK
from agent.commands.check import (
    Findings,
    Inputs,
    add_vehicle_arguments,
    check_monitors,
    load_inputs,
)
from agent.errors import UsageError
from agent.gps.nmea import NmeaParser, read_nmea_file
from agent.model import Event, Fix, Frame, Sample
from agent.monitors.engine import Engine, MemoryFiredStore, MemorySequence, SeededIds
from agent.monitors.model import Catalog, Monitor, ZoneTrigger
from agent.obd.names import ObdCatalog
from agent.obd.settings import ObdConfig
from agent.pipeline import Observer, Pipeline, run_recording
from agent.trace import Recorder, json_line, text_line
from agent.wire import event_to_json

DEFAULT_VIN = "REPLAY0000000000"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_vehicle_arguments(parser)
    parser.add_argument(
        "--can", action="append", default=[], metavar="LOG", help="CAN log (repeat; BUS=LOG)"
    )
    parser.add_argument("--nmea", type=Path, metavar="FILE", help="recorded NMEA file")
    parser.add_argument(
        "--obd", type=Path, metavar="LOG", help="recorded OBD-II session (candump log)"
    )
    parser.add_argument(
        "--monitors",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="monitors JSON",
    )
    parser.add_argument("--vin", help=f"VIN of the events (default: config, else {DEFAULT_VIN})")
    seeing = parser.add_argument_group("seeing the data")
    seeing.add_argument(
        "--trace",
        action="store_true",
        help="print the decoded signals the monitors read, truths and events instead of events",
    )
    seeing.add_argument(
        "--trace-format", choices=("text", "json"), default="text", help="text or JSON lines"
    )
    seeing.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw signals, trigger bands and events"
    )


@dataclass
class Tally:
    can: dict[str, int] = field(default_factory=dict)
    events: int = 0
    reminders: int = 0
    positions: int = 0  # fixes with a position (zone triggers need them)
    obd: dict[str, int] = field(default_factory=dict)


def _can_logs(specs: list[str], buses: list[str]) -> list[tuple[str | None, Path]]:
    """``LOG`` or ``BUS=LOG``; no bus: the first bus of the vehicle (``None`` until known)."""
    out: list[tuple[str | None, Path]] = []
    for spec in specs:
        bus, sep, rest = spec.partition("=")
        if sep and bus and "/" not in bus and not Path(spec).exists():
            if buses and bus not in buses:
                raise UsageError(f"--can {spec}: no bus {bus!r} (buses: {', '.join(buses)})")
            out.append((bus, Path(rest)))
        else:
            out.append((buses[0] if buses else None, Path(spec)))
    return out


def _inputs(
    logs: list[tuple[str | None, Path]],
    nmea: Path | None,
    tally: Tally,
    parser: NmeaParser,
    decoder: Decoder,
    *,
    obd: Iterator[Sample] | None = None,
) -> Iterator[tuple[float, int, Frame | Fix | Sample]]:
    """Frames, fixes and OBD-II samples merged by time. The decoder's filters drop the frames
    of ids nothing uses as the kernel does live, so ``feed`` sees what it sees in the daemon."""
    streams: list[Iterator[tuple[float, int, Frame | Fix | Sample]]] = []
    for index, (bus, path) in enumerate(logs):
        name = bus or "can0"
        frames = read_log(path, name, tally.can, can_filters=decoder.can_filters(name))
        streams.append((f.timestamp, index, f) for f in frames)
    if nmea is not None:
        fixes = _counting_positions(read_nmea_file(nmea, parser=parser), tally)
        streams.append((f.timestamp, len(logs), f) for f in fixes)
    if obd is not None:
        streams.append((s.timestamp, len(logs) + 1, s) for s in obd)
    return heapq.merge(*streams, key=lambda item: (item[0], item[1]))


def _counting_positions(fixes: Iterable[Fix], tally: Tally) -> Iterator[Fix]:
    for fix in fixes:
        if fix.has_position:
            tally.positions += 1
        yield fix


def _emit(event: Event, tally: Tally, *, quiet: bool = False) -> None:
    """Count the event; print it unless the trace prints it (``quiet``)."""
    if event.refresh:
        tally.reminders += 1
    else:
        tally.events += 1
    if not quiet:
        sys.stdout.write(event_to_json(event).decode() + "\n")


def execute(args: argparse.Namespace) -> int:
    if not args.can and args.nmea is None and args.obd is None:
        raise UsageError(
            "nothing to replay: give --can LOG, --nmea FILE and/or --obd LOG", usage=True
        )
    for path in [args.nmea, args.obd, *(p for _, p in _can_logs(args.can, []))]:
        if path is not None and not path.is_file():
            raise UsageError(f"cannot read {path}")
    findings = Findings()
    inputs = _with_obd(load_inputs(args, findings, "replay"), args.obd)
    checked = check_monitors(inputs, findings) if inputs is not None else []
    for line in findings.warn_lines():
        print(line, file=sys.stderr)
    if findings.problems or inputs is None:
        for problem in findings.problems:
            print(problem, file=sys.stderr)
        print(f"replay: {len(findings.problems)} problem(s); nothing replayed", file=sys.stderr)
        return findings.exit_code()
    catalog: Catalog = ObdCatalog(inputs.vehicle.catalog) if inputs.obd else inputs.vehicle.catalog
    engine = Engine(
        args.vin or inputs.vin or DEFAULT_VIN,
        inputs.fleet_id,
        catalog,
        MemoryFiredStore(),
        MemorySequence(),
        event_ids=SeededIds("edgemon-replay"),
    )
    # by id, as the daemon's monitor sync installs them: one input firing several monitors
    # gives their events in the same order
    for monitor in sorted((c.parse.monitor for c in checked if c.parse.monitor), key=_by_id):
        engine.set_monitor(monitor)
    decoder = Decoder(inputs.vehicle)
    decoder.use(engine.wanted_names())
    pipeline = Pipeline(decoder, engine)
    if args.nmea is None:
        _warn_zones(engine, "no --nmea")
    recorder = _recorder(args, engine)
    tally = Tally()
    nmea_parser = NmeaParser(epoch_timeout=None)
    logs = _can_logs(args.can, list(inputs.vehicle.buses))
    # a log that cannot be read raises SourceError: one line from edgemon-agent, exit 2
    obd = _obd_samples(args.obd, inputs, tally) if args.obd is not None else None
    stream = (item for _, _, item in _inputs(logs, args.nmea, tally, nmea_parser, decoder, obd=obd))
    observe: Observer | None = recorder.observe if recorder is not None else None
    for event in run_recording(pipeline, stream, observe):
        _emit(event, tally, quiet=args.trace)
    sys.stdout.flush()
    _summary(tally, decoder, nmea_parser, pipeline.fixes)
    if args.obd is not None:
        found = ", ".join(f"{k}={v}" for k, v in tally.obd.items())
        print(f"replay: OBD-II {args.obd}: {found}", file=sys.stderr)
    if args.nmea is not None and tally.positions == 0:
        _warn_zones(engine, f"no fix with a position in {args.nmea}")
    if recorder is not None and args.plot is not None:
        from agent.plot import write_png  # noqa: PLC0415 - matplotlib only for --plot

        write_png(recorder.recording, args.plot)
        print(f"replay: plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def _with_obd(inputs: Inputs | None, obd: Path | None) -> Inputs | None:
    """With ``--obd`` and no ``[[obd]]`` configured: the OBD-II names join the catalog."""
    if inputs is None or obd is None or inputs.obd:
        return inputs
    return replace(inputs, obd=(ObdConfig("obd", "recorded"),))


def _obd_samples(path: Path, inputs: Inputs, tally: Tally) -> Iterator[Sample]:
    """The recorded session's answers as the poller's samples (names a CAN bus decodes left
    out: CAN first, as live); counts in ``tally.obd``."""
    from agent.obd.recorded import (  # noqa: PLC0415
        MessageReader,
        SessionDecoder,
        guess_addressing,
        samples,
    )

    config = inputs.obd[0]
    addressing = guess_addressing(read_log(path, "obd"))
    reader = MessageReader(addressing)
    decoder = SessionDecoder(max_age=3 * config.pid_period + config.timeout)
    can = inputs.vehicle.catalog
    tally.obd["samples"] = 0
    for sample in samples(read_log(path, "obd"), addressing, decoder, reader):
        if can.describe(sample.name) is None:
            tally.obd["samples"] += 1
            yield sample
    tally.obd.update(
        (k, v)
        for k, v in (reader.counters | decoder.counters).items()
        if k in ("messages", "broken", "answers", "unpaired", "negative", "bad_answers")
    )


def _warn_zones(engine: Engine, why: str) -> None:
    """A zone trigger without positions stays unknown: its monitor can never fire."""
    for monitor in sorted(engine.monitors(), key=_by_id):
        zones = [t.name for t in monitor.triggers if isinstance(t, ZoneTrigger)]
        if zones:
            print(
                f"warning: monitor {monitor.id}: zone trigger(s) {', '.join(zones)} replayed "
                f"without positions ({why}): unknown throughout, so they never hold",
                file=sys.stderr,
            )


def _recorder(args: argparse.Namespace, engine: Engine) -> Recorder | None:
    """With --trace or --plot: a recorder (printing as it goes with --trace)."""
    if not args.trace and args.plot is None:
        return None
    if args.plot is not None:
        from agent.plot import _matplotlib  # noqa: PLC0415 - fail before the replay, not after

        _matplotlib()
    if not args.trace:
        return Recorder(engine)
    start: list[float] = []

    def sink(record: dict[str, object]) -> None:
        if args.trace_format == "json":
            sys.stdout.write(json_line(record) + "\n")
            return
        if not start:
            start.append(float(record["t"]))  # type: ignore[arg-type]
        sys.stdout.write(text_line(record, start[0]) + "\n")

    return Recorder(engine, sink, keep=args.plot is not None)


def _by_id(monitor: Monitor) -> str:
    return monitor.id


def _summary(tally: Tally, decoder: Decoder, parser: NmeaParser, fixes: int) -> None:
    def skips(counters: dict[str, int]) -> str:
        found = [
            f"{k.removeprefix('skipped_')}={v}" for k, v in counters.items() if v and "skip" in k
        ]
        return ", ".join(found) or "none"

    can = tally.can | {"skipped_filtered": tally.can.get("filtered", 0)}  # ids nothing uses
    print(
        f"replay: {can.get('frames', 0)} frames ({decoder.counters['decoded']} decoded; "
        f"skipped: {skips(decoder.counters | can)}), {fixes} fixes "
        f"(skipped: {skips(parser.counters)}), {tally.events} events, "
        f"{tally.reminders} reminders",
        file=sys.stderr,
    )
