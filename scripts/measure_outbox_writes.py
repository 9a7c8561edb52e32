"""How much the outbox writes per hour of driving (SD-card wear, docs/raspberry-pi.md).

    .venv/bin/python -m scripts.measure_outbox_writes [--speed 1]

Replays the recorded drive of tests/data (CAN log + NMEA, its monitors) through
``edgemon-agent run`` against a local mosquitto, under ``strace``, and adds up every byte the
agent writes (write/pwrite64) to outbox.sqlite and outbox.sqlite-wal, and counts the fsyncs. A
subscriber takes the events, as the backend would, so that acknowledged events are deleted.
The -shm file is a shared memory map (no write calls; tmpfs-like). Figures are extrapolated to
one hour by the drive's duration. Needs strace; stops mosquitto and the agent by PID.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt

from agent.paho_compat import stop_network_loop
from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
DRIVE = ROOT / "tests" / "data" / "drive"
CALL = re.compile(r"^\d+\s+(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")


def _config(folder: Path, port: int, speed: float) -> Path:
    text = f"""vin = "VF3DEMO0000000001"
state_dir = "{folder / "state"}"
monitors_file = "{DRIVE / "monitors.json"}"
clock = "gps"
[[can]]
name = "can0"
interface = "virtual"
channel = "measure-{port}"
dbc = ["{ROOT / "dbc/demo_vehicle.dbc"}"]
signal_map = "{ROOT / "dbc/demo_vehicle.map.toml"}"
replay = "{DRIVE / "drive.log"}"
replay_speed = {speed}
[gps]
port = "{DRIVE / "drive.nmea"}"
replay_pace = "realtime"
[mqtt]
host = "127.0.0.1"
port = {port}
"""
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def _duration(log: Path) -> float:
    stamps = [float(line[1:].split(")")[0]) for line in log.read_text().splitlines() if line]
    return max(stamps) - min(stamps)


def _traced_child(strace_pid: int) -> int:
    """The PID of the command strace started (its only child)."""
    children = Path(f"/proc/{strace_pid}/task/{strace_pid}/children").read_text().split()
    return int(children[0])


def tally(trace: Path) -> tuple[Counter[str], Counter[str]]:
    """Bytes written per file name suffix, and fsync-like calls per file."""
    written: Counter[str] = Counter()
    syncs: Counter[str] = Counter()
    for line in trace.read_text().splitlines():
        found = CALL.match(line)
        if found is None or "outbox.sqlite" not in found[3]:
            continue
        name = Path(found[3]).name
        if found[1] in ("write", "pwrite64") and int(found[4]) > 0:
            written[name] += int(found[4])
        elif found[1] in ("fsync", "fdatasync"):
            syncs[name] += 1
    return written, syncs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=1.0, help="CAN replay speed (1: real)")
    args = parser.parse_args()
    duration = _duration(DRIVE / "drive.log")
    with tempfile.TemporaryDirectory() as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        folder = Path(tmp)
        config = _config(folder, broker.port, args.speed)
        trace = folder / "trace.txt"
        log = folder / "agent.log"
        argv = ["strace", "-f", "-y", "-e", "trace=write,pwrite64,fsync,fdatasync",
                "-e", "signal=none", "-o", str(trace),
                sys.executable, "-m", "agent", "run", "-c", str(config)]  # fmt: skip
        # a subscriber to the events, as the backend is: else the broker answers "no matching
        # subscribers" and the agent keeps (and resends) its events instead of deleting them
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        listener.connect(broker.host, broker.port)
        listener.subscribe("edgemon/v1/vehicles/+/events", qos=1)
        listener.loop_start()
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + duration / min(args.speed, 1.0) + 120
            while "replay of" not in log.read_text() or "finished" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    print(log.read_text(), file=sys.stderr)
                    return 1
                time.sleep(1.0)
            time.sleep(5.0)  # the last fixes, commits and acknowledgements
            # SIGTERM to the agent itself: strace (the process started here) does not pass it on
            os.kill(_traced_child(proc.pid), signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            stop_network_loop(listener)
            listener.disconnect()
        written, syncs = tally(trace)
        events = log.read_text().count(" committed: monitor ")
        acked = log.read_text().count(" acknowledged by the broker")
    total = sum(written.values())
    hour = 3600.0 / duration
    print(f"drive: {duration:.0f} s, {events} event(s) committed, {acked} acknowledged")
    for name in sorted(written):
        print(f"  {name}: {written[name]} bytes written, {syncs[name]} fsync(s)")
    print(f"total: {total} bytes -> {total * hour / 1e6:.2f} MB per hour of driving,")
    print(f"       {sum(syncs.values()) * hour:.0f} fsync(s) per hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
