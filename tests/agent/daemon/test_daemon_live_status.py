"""``edgemon-agent status``: a real agent (virtual CAN bus in, real mosquitto out) writes its
live view; the command, run as a real process, shows it once, as JSON, and live until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import can

from agent.app import Agent
from agent.config import load_config
from agent.live import LIVE_SCHEMA, live_path
from tests.agent.daemon.conftest import VIN, agent_toml, engine_frame, oil_monitor
from tests.conftest import ROOT
from tests.support.mosquitto import Mosquitto


def status(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent", "status", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )


def _wait_for(path: Path, predicate: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            body: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            body = {}
        if body and predicate(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"the live view never showed {what}")


def test_status_shows_signals_monitors_outbox_and_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    channel = f"edgemon-live-{tmp_path.name}"
    config_path = agent_toml(
        tmp_path / "agent",
        mosquitto.port,
        can=f'interface = "virtual"\nchannel = "{channel}"',
        monitors=[oil_monitor("130", id="oil-hot")],
    )
    config = load_config(config_path, env={})
    agent = Agent(config)
    path = live_path(config.state_dir, {})
    assert agent.live_path == path
    thread = threading.Thread(target=agent.run)
    thread.start()
    bus = can.Bus(interface="virtual", channel=channel)
    sending = threading.Event()
    sender: threading.Thread | None = None
    try:
        while not all(r.source is not None and r.source.is_open for r in agent.readers):
            time.sleep(0.01)
        frame_id, data = engine_frame(140)

        def send() -> None:  # the message's cycle, so the signal stays fresh
            while not sending.wait(0.05):
                bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=False))

        sender = threading.Thread(target=send)
        sender.start()
        body = _wait_for(
            path,
            lambda b: b["broker"]["connected"] and b["monitors"]["oil-hot"]["truth"] is True,
            "the oil monitor true and the broker connected",
        )
        assert body["schema"] == LIVE_SCHEMA and body["vin"] == VIN
        oil = body["signals"]["vehicle.engines.thermic.oil.temp"]
        assert oil["value"] == 140 and oil["stale"] is False and oil["ageSeconds"] >= 0
        assert body["monitors"]["oil-hot"]["triggers"] == {"oil": True}
        assert body["monitors"]["oil-hot"]["lastEvent"] is not None

        once = status("--file", path, "--once")
        assert once.returncode == 0, once.stderr
        lines = once.stdout.splitlines()
        assert lines[0].startswith(f"edgemon agent {VIN}   at ")
        assert lines[1].startswith(f"broker 127.0.0.1:{mosquitto.port} connected   outbox ")
        assert any(
            line.split()[:2] == ["vehicle.engines.thermic.oil.temp", "140"] for line in lines
        )
        assert any(line.split()[:3] == ["oil-hot", "true", "oil=true"] for line in lines)

        as_json = status("--config", config_path, "--json")  # found through state_dir
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["monitors"]["oil-hot"]["truth"] is True

        live = subprocess.Popen(
            [sys.executable, "-m", "agent", "status", "--file", str(path), "--interval", "0.2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert live.stdout is not None
            seen = 0
            while seen < 2:  # two redraws
                line = live.stdout.readline()
                assert line, "status ended early"
                seen += line.startswith("edgemon agent ")
            live.send_signal(signal.SIGINT)
            _out, err = live.communicate(timeout=20)  # drained: a full pipe would block its exit
            assert live.returncode == 0  # Ctrl-C ends the live view cleanly
            assert "Traceback" not in err
        finally:
            if live.poll() is None:
                os.kill(live.pid, signal.SIGKILL)
                live.wait()
    finally:
        sending.set()
        if sender is not None:
            sender.join(5)
        bus.shutdown()
        agent.request_stop()
        thread.join(15)
    assert not thread.is_alive()

    missing = status("--file", tmp_path / "nothing.json", "--once")
    assert missing.returncode == 2 and "is the agent running?" in missing.stderr
