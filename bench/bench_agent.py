"""The agent as a user runs it: ``edgemon-agent run`` in its own process, with 100 monitors (the
mix of ``bench_engine``) and two buses: the demo car (whose signals the monitors watch, fed by a
replayed candump log at its recorded pace) and the largest opendbc DBC that loads.

- ``agent_startup_s``: from just before the process is started to the arrival, at an MQTT
  subscriber, of the event the first replayed frame fires (so it also includes the commit and
  the publish, an upper bound of "first frame processed").
- ``agent_rss_mb``: the highest VmRSS of the agent process, sampled while it replays the drive
  (one oil threshold crossing every 20 ms) after the first event.

Usage: .venv/bin/python bench/bench_agent.py (``BENCH_SMOKE=1``: shorter replay)
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cantools  # noqa: E402
import opendbc  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from bench_engine import definitions  # noqa: E402
from harness import adopt, guard, pick, rss_mb, spawn, stage, stop, write_results  # noqa: E402
from machine import machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.can.dbc import DEMO_DBC, DEMO_MAP, BusSpec, load_vehicle  # noqa: E402
from agent.paho_compat import stop_network_loop  # noqa: E402
from agent.wire import Topics  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

VIN = "VF3BENCHAGENT0001"
OPENDBC = Path(opendbc.__file__).resolve().parent / "dbc"


def largest_dbc() -> tuple[Path, int]:
    """The largest opendbc DBC file that the agent loads, and how many were tried."""
    for tried, path in enumerate(sorted(OPENDBC.glob("*.dbc"), key=lambda p: -p.stat().st_size)):
        try:
            load_vehicle([BusSpec("can1", (path,), None)])
        except Exception as exc:  # any failure: try the next one
            print(f"{path.name} does not load: {exc}")
            continue
        return path, tried + 1
    raise RuntimeError(f"no DBC of {OPENDBC} loads")


def write_drive(path: Path, seconds: float) -> int:
    """A candump log: EngineData every 10 ms, oil alternating 100/140 degC (a firing every
    20 ms of the ``first`` monitor), starting hot so the very first frame fires."""
    db = cantools.database.load_file(str(DEMO_DBC))
    message = db.get_message_by_name("EngineData")
    payloads = {}
    for temp in (100, 140):
        values = {s.name: 0 for s in message.signals}
        values.update(OilTemp=temp, EngineRunning=1, EngineSpeed=1500)
        payloads[temp] = message.encode(values, strict=False).hex().upper()
    t0 = 1_781_121_480.0
    count = int(seconds / 0.01)
    lines = [
        f"({t0 + i * 0.01:.6f}) can0 {message.frame_id:03X}#{payloads[140 if i % 2 == 0 else 100]}"
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return count


def agent_files(work: Path, port: int, dbc: Path, seconds: float) -> Path:
    first = {
        "id": "first",
        "label": "first frame",
        "triggerParam": {
            "triggers": [
                {
                    "name": "hot",
                    "data": {
                        "data": "vehicle.engines.thermic.oil.temp",
                        "op": "greaterThan",
                        "value": ["120"],
                    },
                }
            ],
            "boolExp": "hot",
        },
    }
    (work / "monitors.json").write_text(json.dumps([first, *definitions()[:99]]))
    write_drive(work / "drive.log", seconds)
    config = work / "agent.toml"
    config.write_text(
        f'vin = "{VIN}"\nstate_dir = "{work / "state"}"\nmonitors_file = "monitors.json"\n'
        f'[[can]]\nname = "can0"\ninterface = "virtual"\nchannel = "bench-agent-0"\n'
        f'dbc = ["{DEMO_DBC}"]\nsignal_map = "{DEMO_MAP}"\nreplay = "drive.log"\n'
        f'[[can]]\nname = "can1"\ninterface = "virtual"\nchannel = "bench-agent-1"\n'
        f'dbc = ["{dbc}"]\n'
        f"[mqtt]\nport = {port}\n"
    )
    return config


class FirstEvent:
    """An MQTT subscriber to the agent's events: the wall time of the first one, and a count."""

    def __init__(self, broker: Mosquitto) -> None:
        self.first: float | None = None
        self.count = 0
        self.arrived = threading.Event()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(Topics().events(VIN), qos=0)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("events subscriber: no SUBACK within 10 s")

    def _on_message(self, *_args: object) -> None:
        self.count += 1
        if self.first is None:
            self.first = time.time()
            self.arrived.set()

    def close(self) -> None:
        stop_network_loop(self.client)
        self.client.disconnect()


def measure(work: Path, seconds: float) -> dict[str, float]:
    dbc, tried = largest_dbc()
    print(f"largest opendbc DBC that loads: {dbc.name} ({dbc.stat().st_size:,} bytes, "
          f"{tried} tried); 100 monitors; replay {seconds:.0f} s")  # fmt: skip
    broker = Mosquitto(work / "broker").start()
    assert broker.process is not None
    adopt(broker.process)
    events = FirstEvent(broker)
    config = agent_files(work, broker.port, dbc, seconds)
    log = (work / "agent.log").open("wb")
    started = time.time()
    agent = spawn(
        [sys.executable, "-m", "agent", "run", "-c", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        if not events.arrived.wait(30) or events.first is None:
            tail = (work / "agent.log").read_text()[-2000:]
            raise RuntimeError(f"no event from the agent within 30 s; its log:\n{tail}")
        startup = events.first - started
        peak = 0.0
        end = started + seconds
        while time.time() < end and agent.poll() is None:
            peak = max(peak, rss_mb(agent.pid))
            time.sleep(0.2)
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited with {agent.returncode}")
        print(f"agent_startup_s {startup:.3f}; peak RSS {peak:.1f} MiB; {events.count} events")
        return {
            "agent_startup_s": startup,
            "agent_rss_mb": peak,
            "agent_dbc_bytes": dbc.stat().st_size,
        }
    finally:
        stop(agent)
        events.close()
        broker.stop()
        log.close()


def main() -> int:
    guard("bench_agent")
    print(f"# bench_agent on {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp, stage("agent", 25):
        figures = measure(Path(tmp), pick(8.0, 3.0))
    write_results("agent", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
