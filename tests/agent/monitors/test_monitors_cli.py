"""``edgemon-agent replay`` on the golden drive, and ``edgemon-agent check`` exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DRIVE = ROOT / "tests" / "data" / "drive"


def agent(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_replay_of_the_recorded_drive_gives_exactly_the_golden_events() -> None:
    result = agent(
        "replay",
        "--can", DRIVE / "drive.log",
        "--nmea", DRIVE / "drive.nmea",
        "--monitors", DRIVE / "monitors.json",
        "--vin", "VF3DEMO0000000001",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == (DRIVE / "expected.jsonl").read_text()
    events = [json.loads(line) for line in result.stdout.splitlines()]
    # the story of the drive (make_drive.py), stated independently of the golden file
    assert [(e["monitorId"], e["eventDate"][11:23], e["refresh"]) for e in events] == [
        ("door-open", "19:58:05.005", False),  # driver door, parked
        ("depot-in", "19:58:10.000", False),  # 10 s dwell from the start (no saved state)
        ("depot-out", "19:58:47.000", False),  # beyond 300 m + 20 m margin
        ("oil-hot", "19:59:35.600", False),  # 121 > 120
        ("site-in", "19:59:57.000", False),  # polygon entered, engine running
        ("evening-use", "20:00:00.000", False),  # 22:00 in Paris, in use
        ("oil-hot", "20:00:35.600", True),  # reminder after 60 s
        ("depot-in", "20:02:06.000", False),  # back inside 280 m at t 236, dwell 10 s
        ("door-open", "20:02:25.005", False),
    ]
    assert [e["seq"] for e in events] == list(range(1, 10))
    ids = [uuid.UUID(e["eventId"]) for e in events]
    assert {i.version for i in ids} == {7} and len(set(ids)) == 9
    assert "5602 frames" in result.stderr and "281 fixes" in result.stderr
    assert "8 events, 1 reminders" in result.stderr


def test_replay_is_deterministic() -> None:
    args = ("replay", "--can", DRIVE / "drive.log", "--monitors", DRIVE / "monitors.json")
    first, second = agent(*args), agent(*args)
    assert first.returncode == 0 and first.stdout == second.stdout
    assert [json.loads(line)["monitorId"] for line in first.stdout.splitlines()] == [
        "door-open",
        "oil-hot",
        "evening-use",
        "oil-hot",
        "door-open",
    ]  # CAN only: zone monitors stay unknown without fixes


def test_check_accepts_the_drive_monitors_on_the_demo_vehicle() -> None:
    result = agent("check", "--monitors", DRIVE / "monitors.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "6 of 6 monitor(s) valid" in result.stderr


def test_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    stolen = {"data": "stolen.state", "op": "equalsTo", "value": ["true"]}
    moving = {"data": "vehicle.kinetic.moving", "op": "greaterThan", "value": ["1"]}
    odometer = {"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"]}
    bad = [
        {
            "id": "bad",
            "label": "x",
            "subscribeParam": {"callback": {"target": "http://plain.example/hook", "name": "n"}},
            "triggerParam": {
                "triggers": [{"name": "a", "data": stolen}, {"name": "b", "data": moving}],
                "boolExp": "a & b & c",
            },
        },
        {
            "id": "bad",
            "label": "dup",
            "triggerParam": {"triggers": [{"name": "d", "data": odometer}], "boolExp": "d"},
        },
    ]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(bad))
    result = agent("check", "--monitors", path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 4, lines
    assert "triggers[0].data.data: this vehicle does not provide 'stolen.state'" in lines[0]
    assert "triggers[1].data.op" in lines[1]
    assert "'c', which is not a trigger" in lines[2]
    assert "already used" in lines[3]
    assert "plain http" in result.stderr  # the callback part is only a warning here
    assert "Traceback" not in result.stderr


def test_check_exit_2_for_unreadable_files(tmp_path: Path) -> None:
    result = agent("check", "--monitors", tmp_path / "missing.json")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"edgemon-agent: cannot read {tmp_path / 'missing.json'}"
    ]
    result = agent("replay", "--can", tmp_path / "nope.log", "--monitors", DRIVE / "monitors.json")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_check_reports_a_broken_dbc_and_a_non_json_monitors_file(tmp_path: Path) -> None:
    dbc = tmp_path / "broken.dbc"
    dbc.write_text('VERSION "x"\nBO_ 1 M: 8 X\n SG_ S : 0|8@1+ (1,0) [0|1] "" X\n garbage here\n')
    result = agent("check", "--dbc", dbc)
    # a vehicle that cannot be loaded is unusable input, as for `run`: 2 (docs/cli.md)
    assert result.returncode == 2 and "broken.dbc" in result.stdout
    text = tmp_path / "m.json"
    text.write_text("{not json")
    result = agent("check", "--monitors", text)
    assert result.returncode == 1 and "not valid JSON" in result.stdout


def test_replay_and_check_with_a_config_file(tmp_path: Path) -> None:
    dbc_dir = ROOT / "dbc"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'vin = "VF3CONFIG00000001"\nfleet_id = "fleet-7"\nstate_dir = "{tmp_path}"\n'
        f'monitors_file = "{DRIVE / "monitors.json"}"\n'
        '[[can]]\nname = "can0"\ninterface = "virtual"\nchannel = "bench"\n'
        f'dbc = ["{dbc_dir / "demo_vehicle.dbc"}"]\n'
        f'signal_map = "{dbc_dir / "demo_vehicle.map.toml"}"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 1883\n'
    )
    result = agent("check", "--config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 of 6 monitor(s) valid" in result.stderr  # monitors_file of the config
    result = agent(
        "replay",
        "--config",
        config,
        "--can",
        DRIVE / "drive.log",
        "--monitors",
        DRIVE / "monitors.json",
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(e["vin"], e["fleetId"]) for e in events} == {("VF3CONFIG00000001", "fleet-7")}
    broken = tmp_path / "broken.toml"
    broken.write_text('vin = 7\n[mqtt]\nport = "x"\n')
    result = agent("check", "--config", broken)
    assert result.returncode == 2  # a configuration error: 2, as in `run`
    assert "$.vin" in result.stdout and "Traceback" not in result.stderr


def test_replay_refuses_invalid_monitors_with_every_problem(tmp_path: Path) -> None:
    bad = {"id": "x", "label": "x", "triggerParam": {"triggers": [], "boolExp": "a"}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = agent("replay", "--can", f"can0={DRIVE / 'drive.log'}", "--monitors", path)
    assert result.returncode == 1 and result.stdout == ""
    assert "$.triggerParam.triggers: needs 1 to 10 triggers" in result.stderr
    assert "'a', which is not a trigger" in result.stderr
