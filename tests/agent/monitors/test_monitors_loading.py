"""One reader of monitors files: ``check``, ``replay`` and ``run`` read a file the same way.

The file mixes what the three used to judge differently (issue 13): a delivery problem (only a
warning on the vehicle), an id used twice, a repeated key, an invalid trigger. ``check`` and
``replay`` run as the CLI runs; ``run`` is the daemon's monitor sync fed by the same reader.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agent.can.dbc import demo_buses, load_vehicle
from agent.monitors.loading import check_definitions, read_monitors_file
from agent.uplink.monitor_sync import MonitorSync
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, oil_monitor
from tests.agent.uplink.test_uplink_monitor_sync import RecordingEngine

ROOT = Path(__file__).resolve().parents[3]
DRIVE = ROOT / "tests" / "data" / "drive"
TOPICS = Topics()


def _entries() -> str:
    plain_http = oil_monitor("125", id="plain-http")
    plain_http["subscribeParam"]["callback"]["webhook"]["target"] = "http://plain.example/hook"
    broken = oil_monitor("90", id="broken")
    broken["triggerParam"]["boolExp"] = "oil & ghost"
    items = [
        json.dumps(oil_monitor("120", id="oil")),
        json.dumps(plain_http),  # the callback is the backend's to judge: a warning here
        json.dumps(oil_monitor("130", id="oil")),  # the id is taken by the first entry
        json.dumps(broken),
        # a repeated key, kept by the reader: the parser decides what it means
        json.dumps(oil_monitor("110", id="twice"))[:-1] + ', "label": "again"}',
    ]
    return "[" + ",\n".join(items) + "]"


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _run_reading(path: Path) -> tuple[set[str], set[tuple[str, str]]]:
    """What the daemon makes of the file: the running ids and the (id, problem) pairs."""
    engine = RecordingEngine()
    sent: list[tuple[str, bytes]] = []
    sync = MonitorSync(
        VIN,
        None,
        TOPICS,
        catalog=load_vehicle(demo_buses()).catalog,
        engine=engine,
        publish=lambda t, p: sent.append((t, p)),
        clock=lambda: 0.0,
    )
    sync.load_local(read_monitors_file(path))
    problems = set()
    for topic, payload in sent:
        state = json.loads(payload) if payload else {}
        monitor_id = topic.split("/")[-2]
        problems |= {(monitor_id, f"{r['path']}: {r['message']}") for r in state.get("reasons", [])}
    return set(engine.monitors), problems


def test_check_replay_and_run_read_a_monitors_file_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "monitors.json"
    path.write_text(_entries())

    checked = _cli("check", "--monitors", path)
    assert checked.returncode == 1, checked.stderr
    check_problems = {_split(line) for line in checked.stdout.splitlines()}
    assert {ident for ident, _ in check_problems} == {"oil", "broken"}
    assert any("already used" in p for ident, p in check_problems if ident == "oil")
    assert "plain http" in checked.stderr  # a warning, not a problem

    replayed = _cli("replay", "--can", DRIVE / "drive.log", "--monitors", path)
    assert replayed.returncode == 1 and replayed.stdout == ""
    lines = [
        line
        for line in replayed.stderr.splitlines()
        if not line.startswith(("warning: ", "replay: no --config"))  # the vehicle it assumes
    ]
    assert lines[:-1] == checked.stdout.splitlines()

    with caplog.at_level(logging.WARNING, logger="agent.uplink.monitor_sync"):
        running, run_problems = _run_reading(path)
    assert run_problems == check_problems
    catalog = load_vehicle(demo_buses()).catalog
    valid = {c.parse.monitor.id for c in check_definitions(read_monitors_file(path), catalog)
             if c.parse.monitor is not None}  # fmt: skip
    assert running == valid == {"oil", "plain-http", "twice"}
    assert any("plain http" in r.getMessage() for r in caplog.records)


def _split(line: str) -> tuple[str, str]:
    """``SOURCE (id): $.path: message`` -> (id, "$.path: message")."""
    head, _, problem = line.partition("): ")
    return head.rpartition("(")[2], problem
