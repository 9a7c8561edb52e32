"""``replay`` of a CAN log and ``run`` on the same log give the same events (issue 13).

Both go through one pipeline step (``agent.pipeline``). ``run`` is the real daemon, replaying
the log as if live (``replay`` in its ``[[can]]`` section, as fast as it can) into a real
mosquitto; ``replay`` is the CLI on the log's own clock. Their clocks differ (the daemon stamps
frames with the time it reads them), so the comparison is on what fired, in order, with which
values: data triggers on edges, which no clock moves.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, Collector, agent_toml, engine_frame, oil_monitor
from tests.agent.daemon.test_daemon_process import processes  # noqa: F401 - a fixture
from tests.conftest import ROOT
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
OIL = [100, 125, 100, 135, 128, 100, 140, 131, 90, 122]  # °C, one frame each


def _oil_log(path: Path, step: float = 0.05) -> Path:
    lines = []
    for i, temp in enumerate(OIL):
        frame_id, data = engine_frame(temp)
        lines.append(f"({1_700_000_000 + i * step:.6f}) can0 {frame_id:03X}#{data.hex().upper()}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _fired(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """(monitor, reminder?, values) of each event, in sequence order."""
    ordered = sorted(events, key=lambda e: int(e["seq"]))  # type: ignore[call-overload]
    return [(e["monitorId"], e["refresh"], json.dumps(e["values"])) for e in ordered]


def test_replay_and_run_fire_the_same_events_on_one_log(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    processes: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture
) -> None:
    log = _oil_log(tmp_path / "oil.log")
    monitors = [oil_monitor("120", id="warm"), oil_monitor("130", id="hot")]
    folder = tmp_path / "agent"
    can = f'interface = "virtual"\nchannel = "agree"\nreplay = "{log}"\nreplay_speed = 0'
    config = agent_toml(folder, mosquitto.port, can=can, monitors=monitors)

    replayed = subprocess.run(
        [sys.executable, "-m", "agent", "replay", "--config", config, "--can", log,
         "--monitors", folder / "monitors.json"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    expected = _fired([json.loads(line) for line in replayed.stdout.splitlines()])
    # 125, 135, 140, 122 cross 120; 135 and 140 cross 130 (each falls back in between); one
    # frame firing both gives them in id order, as the daemon installs its monitors
    assert [m for m, _, _ in expected] == ["warm", "hot", "warm", "hot", "warm", "warm"]

    collector = collector_factory(mosquitto.host, mosquitto.port, [TOPICS.events(VIN)])
    proc = processes(config)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= len(expected), timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    ran = [json.loads(p) for p in collector.payloads("/events")]
    assert _fired(ran) == expected
    assert {e["vin"] for e in ran} == {VIN}
