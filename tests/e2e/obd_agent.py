"""``python tests/e2e/obd_agent.py agent.toml FLAG``: the agent with an ECU twin in its process.

python-can's ``virtual`` bus lives inside one process, so the twin (the demo car) answers on it
beside the agent's ``[[obd]]`` poller. When the file FLAG appears, the ECM's pending P0301
becomes confirmed: the test decides when the fault happens.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import can

from agent.__main__ import main
from agent.obd.addressing import Addressing
from agent.obd.twin import TwinRunner, demo_car

CHANNEL = "edgemon-obd"


def _confirm_when(flag: Path, runner: TwinRunner) -> None:
    pause = threading.Event()  # not time.sleep: libfaketime breaks it in clock-ahead runs
    while not flag.exists():
        pause.wait(0.1)
    ecm = runner.car.ecus[0]
    with runner.car.lock:
        ecm.confirmed, ecm.pending = ["P0301"], []


def run(config: str, flag: str) -> int:
    bus = can.Bus(interface="virtual", channel=CHANNEL)
    runner = TwinRunner(bus, demo_car(Addressing(False))).start()
    threading.Thread(target=_confirm_when, args=(Path(flag), runner), daemon=True).start()
    try:
        return main(["run", "-c", config])
    finally:
        runner.stop()
        bus.shutdown()


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2]))
