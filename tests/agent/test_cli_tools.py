"""The testers' tools of issue 18: ``replay --trace``/``--plot``, the warnings that say why
nothing happened, the usage errors, did-you-mean, the vehicle assumed, ``check --json`` and
the exit codes. Commands run in-process through ``agent.__main__.main`` (as the console script
does), a few as real processes where the process boundary is the point (usage lines, versions).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.__main__ import main
from agent.can.dbc import DEMO_DBC, load_vehicle
from agent.config import load_config
from agent.errors import ConfigError, DbcError
from agent.source_settings import BusSpec
from agent.suggest import close_names, did_you_mean
from tests.conftest import ROOT

DRIVE = ROOT / "tests" / "data" / "drive"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def monitors_file(tmp_path: Path, *monitors: dict[str, Any]) -> Path:
    path = tmp_path / "monitors.json"
    path.write_text(json.dumps(list(monitors)))
    return path


def data_monitor(ident: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "label": ident,
        "triggerParam": {"triggers": [{"name": "t", "data": data, **extra}], "boolExp": "t"},
    }


# -- replay --trace ------------------------------------------------------------------------------


def test_replay_trace_json_lists_decoded_values_truths_and_the_golden_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys,
        "replay", "--can", DRIVE / "drive.log", "--nmea", DRIVE / "drive.nmea",
        "--monitors", DRIVE / "monitors.json", "--vin", "VF3DEMO0000000001",
        "--trace", "--trace-format", "json",
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["kind"] for r in records} == {"signal", "fix", "trigger", "expression", "event"}
    # the events inside the trace are the replay's own events, byte for byte the golden ones
    golden = [json.loads(line) for line in (DRIVE / "expected.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records if r["kind"] == "event"] == golden
    # decoded values of the signals the monitors read, in time order, with their unit
    oil = [r for r in records if r["kind"] == "signal" and r["name"].endswith("oil.temp")]
    assert oil[0]["value"] == 85 and oil[0]["unit"] == "degC"
    assert max(r["value"] for r in oil) == 125  # the drive's peak (make_drive.py)
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    assert {r["name"] for r in records if r["kind"] == "signal"} == {
        "vehicle.doorsState.opening",
        "vehicle.engines.running",
        "vehicle.engines.thermic.oil.temp",
    }  # what the triggers read (and the time trigger's "in use"), not the extensions' data
    # the oil trigger turns true at the first value above 120, where oil-hot fires
    first_hot = next(r for r in oil if r["value"] > 120)
    turned = next(
        r for r in records
        if r["kind"] == "trigger" and r["monitor"] == "oil-hot" and r["truth"] is True
    )  # fmt: skip
    assert turned["t"] == first_hot["t"] and turned["at"] == "2026-06-10T19:59:35.600Z"


def test_replay_trace_text_reads_as_a_story(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "replay", "--can", DRIVE / "drive.log", "--nmea", DRIVE / "drive.nmea",
        "--monitors", DRIVE / "monitors.json", "--trace",
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert "+    5.005s 2026-06-10T19:58:05.005Z  vehicle.doorsState.opening = Open" in lines
    assert (
        "+    5.005s 2026-06-10T19:58:05.005Z  EVENT door-open values: "
        "vehicle.doorsState.opening=Open" in lines
    )
    assert sum(line.split()[3] == "EVENT" for line in lines) == 8
    assert sum(line.split()[3] == "REMINDER" for line in lines) == 1
    assert not any(line.lstrip().startswith("{") for line in lines)  # no event JSON mixed in


# -- replay --plot -------------------------------------------------------------------------------


def test_replay_plot_writes_a_png_of_signals_bands_and_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.plot

    figures = []
    write_png = agent.plot.write_png

    def keep(recording: Any, path: Path) -> Any:
        figures.append(write_png(recording, path))
        return figures[-1]

    monkeypatch.setattr(agent.plot, "write_png", keep)
    out_png = tmp_path / "drive.png"
    code, out, err = run(
        capsys, "replay", "--can", DRIVE / "drive.log", "--nmea", DRIVE / "drive.nmea",
        "--monitors", DRIVE / "monitors.json", "--plot", out_png,
    )  # fmt: skip
    assert code == 0, err
    assert len(out.splitlines()) == 9  # the events still go to stdout
    # the file: a PNG of the figure's size (IHDR width and height at 100 dpi)
    data = out_png.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    (figure,) = figures
    assert (width, height) == tuple(round(v * 100) for v in figure.get_size_inches())
    assert len(data) > 20_000
    # its pixels: the three band colours are drawn (true green, false red, unknown grey)
    import matplotlib.image

    pixels = {tuple(p) for p in (matplotlib.image.imread(out_png)[:, :, :3] * 255).round()
              .astype(int).reshape(-1, 3).tolist()}  # fmt: skip
    assert {(0x2E, 0x9D, 0x4F), (0xD9, 0x53, 0x4F), (0xB0, 0xB0, 0xB0)} <= pixels
    # its structure: 3 signal panels, then one panel per monitor (6)
    axes = figure.get_axes()
    assert len(axes) == 3 + 6
    labels = [line.get_label() for ax in axes[:3] for line in ax.get_lines() if line.get_gid()
              and line.get_gid().startswith("signal:")]  # fmt: skip
    assert labels == [
        "vehicle.doorsState.opening",
        "vehicle.engines.running",
        "vehicle.engines.thermic.oil.temp [degC]",
    ]
    oil_panel = axes[7]
    assert oil_panel.get_title(loc="left") == "oil-hot: Oil above 120 degC   [oil]"
    bands = {c.get_gid() for c in oil_panel.collections}
    assert {"band:oil-hot:oil:true", "band:oil-hot:oil:false",
            "band:oil-hot:(expression):true"} <= bands  # fmt: skip
    # every event is a line on each signal panel and on its monitor's panel
    events = [ln.get_gid() for ln in axes[0].get_lines() if str(ln.get_gid()).startswith("event")]
    assert len(events) == 9
    assert [ln.get_gid() for ln in oil_panel.get_lines()].count("event:oil-hot") == 2
    thresholds = [ln.get_gid() for ln in axes[2].get_lines()]
    assert "threshold:oil-hot:oil" in thresholds  # 120 degC, dotted on the oil panel


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import plot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(plot.PlotUnavailable, match=r"pip install 'edgemon\[plot\]'"):
        plot._matplotlib()


# -- saying why nothing happened -----------------------------------------------------------------


def test_replay_warns_of_zone_monitors_without_positions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(
        capsys, "replay", "--can", DRIVE / "drive.log", "--monitors", DRIVE / "monitors.json"
    )
    assert code == 0
    warned = sorted(line.split()[2] for line in err.splitlines() if "without positions" in line)
    assert warned == ["depot-in:", "depot-out:", "site-in:"]  # the three with zone triggers


def test_check_warns_of_a_threshold_outside_the_dbc_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    throttle = {"data": "EngineData.ThrottlePosition", "op": "greaterThan", "value": ["500"]}
    inside = {"data": "EngineData.ThrottlePosition", "op": "greaterThan", "value": ["90"]}
    path = monitors_file(tmp_path, data_monitor("wide", throttle), data_monitor("ok", inside))
    code, out, err = run(capsys, "check", "--monitors", path)
    assert code == 0 and out == ""  # accepted: a warning, not a problem
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {path}[0] (wide): $.triggerParam.triggers[0].data.value[0]: 500 is outside "
        "the range the DBC declares for EngineData.ThrottlePosition (0..102 %): "
        "the signal never takes it"
    ]


def test_simulate_warns_of_a_value_clipped_to_the_dbc_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "clip.toml"
    scenario.write_text(
        'name = "clip"\nstart = "2026-11-23T23:10:00"\ntimezone = "Europe/Paris"\nduration = 2\n'
        '[signals]\n"EngineData.ThrottlePosition" = 140\n'
        '"vehicle.engines.thermic.oil.temp" = 90\n'
    )
    log = tmp_path / "clip.log"
    code, _, err = run(capsys, "simulate", "--scenario", scenario, "--fast", "--can-log", log)
    assert code == 0
    assert err.count("warning") == 1, err
    assert (
        "simulate: warning: EngineData.ThrottlePosition: 140 is outside the range of "
        "EngineData.ThrottlePosition in the DBC (0..102): sent as 102"
    ) in err
    assert log.stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check"], "nothing to check"),
        (["replay", "--monitors", str(DRIVE / "monitors.json")], "nothing to replay"),
        (["simulate", "--scenario", "docs/scenarios/night-depot-exit.toml", "--fast"], "no output"),
    ],
)
def test_nothing_to_do_exits_2_with_a_usage_line(args: list[str], message: str) -> None:
    result = process("agent", *args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"usage: edgemon-agent {args[0]} ")
    assert lines[-1].startswith(f"edgemon-agent {args[0]}: error: {message}")
    assert result.stdout == ""


# -- did you mean --------------------------------------------------------------------------------


def test_did_you_mean_in_monitor_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    window = {"recurrence": "Daily", "start": "PT22H", "duration": "PT8H", "occurence": ["Mnday"]}
    path = monitors_file(
        tmp_path,
        data_monitor("op", {"data": "vehicle.odometer", "op": "greaterThen", "value": ["5"]}),
        data_monitor(
            "data", {"data": "vehicle.engines.thermic.oil.tmp", "op": "greaterThan", "value": ["5"]}
        ),
        data_monitor("signal", {"data": "EngineData.OilTmp", "op": "greaterThan", "value": ["5"]}),
        data_monitor(
            "key",
            {"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"], "hysteresys": 1},
        ),
        {
            "id": "day",
            "label": "day",
            "triggerParam": {
                "triggers": [
                    {"name": "t", "time": {"timeZone": "Europe/Paris", "times": [window]}}
                ],
                "boolExp": "t",
            },
        },
    )
    code, out, _ = run(capsys, "check", "--monitors", path)
    assert code == 1
    hints = {line.split(" ")[1]: line.split(": ", 2)[2] for line in out.splitlines()}
    assert hints == {
        "(op):": "unknown operator 'greaterThen' (did you mean 'greaterThan'?)",
        "(data):": "this vehicle does not provide 'vehicle.engines.thermic.oil.tmp' "
        "(did you mean 'vehicle.engines.thermic.oil.temp'?)",
        "(signal):": "this vehicle does not provide 'EngineData.OilTmp' "
        "(did you mean 'EngineData.OilTemp'?)",
        "(key):": "unknown field (did you mean 'hysteresis'?)",
        "(day):": "not a day (Mon..Sun): 'Mnday' (did you mean 'Monday'?)",
    }


def test_did_you_mean_in_configuration_and_scenario_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'vin = "VF3TEST0000000001"\n[[can]]\nchannel = "vcan0"\nreplay_sped = 5\n'
        '[mqtt]\nhots = "127.0.0.1"\n[gps]\nport = "/dev/ttyACM0"\nreplay_sped = 5\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    messages = {p.path: p.message for p in caught.value.problems}
    assert messages["$.can[0].replay_sped"] == "unknown setting (did you mean 'replay_speed'?)"
    assert messages["$.mqtt.hots"] == "unknown setting (did you mean 'host'?)"
    assert messages["$.gps.replay_sped"] == "unknown setting (did you mean 'replay_speed'?)"
    signal_map = tmp_path / "map.toml"
    text = (ROOT / "dbc" / "demo_vehicle.map.toml").read_text()
    signal_map.write_text(text.replace('"EngineData.OilTemp"', '"EngineData.OilTmp"'))
    with pytest.raises(DbcError, match=r"has no signal OilTmp .*\(did you mean 'OilTemp'\?\)"):
        load_vehicle([BusSpec("can0", (DEMO_DBC,), signal_map)])
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'name = "s"\nstart = "2026-11-23T23:10:00"\ntimezone = "Europe/Paris"\nduration = 1\n'
        '[signals]\n"vehicle.engines.thermic.oil.tmp" = 90\n'
    )
    code, _, err = run(capsys, "simulate", "--scenario", scenario, "--fast", "--can-log",
                       tmp_path / "x.log")  # fmt: skip
    assert code == 2
    assert "(did you mean 'vehicle.engines.thermic.oil.temp'?)" in err


def test_suggestions_are_near_or_absent() -> None:
    assert did_you_mean("zzz", ["greaterThan"]) == ""
    assert did_you_mean("greaterThan" * 100, ["greaterThan"]) == ""  # too long to be a typo
    assert close_names("LOWERTHAN", ["lowerThan", "lowerOrEqual"]) == ["lowerThan"]
    # a shared "vehicle." prefix alone is not a likeness
    assert close_names("vehicle.autonomy", ["vehicle.odometer"]) == []
    assert did_you_mean("equalTo", ["equalsTo", "notEqualTo"]) == " (did you mean 'equalsTo'?)"


# -- which vehicle, JSON for CI, exit codes, versions --------------------------------------------


def test_commands_say_which_vehicle_they_assume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "check", "--monitors", DRIVE / "monitors.json")
    assert code == 0
    assert "check: no --config: assuming DBC " in err
    assert "demo_vehicle.dbc (the demo vehicle)" in err
    assert "signal map " in err and "demo_vehicle.map.toml" in err
    dbc = ROOT / "dbc" / "demo_vehicle.dbc"
    code, _, err = run(capsys, "check", "--dbc", dbc)
    assert code == 0 and f"assuming DBC {dbc}, no signal map (DBC names only)" in err


def test_check_json_for_ci(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = data_monitor("bad", {"data": "vehicle.odometer", "op": "greaterThen", "value": ["5"]})
    good = data_monitor("good", {"data": "vehicle.odometer", "op": "greaterThan", "value": ["5"]})
    path = monitors_file(tmp_path, good, bad)
    code, out, _ = run(capsys, "check", "--monitors", path, "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["exitCode"] == 1
    assert doc["monitors"] == [
        {"source": f"{path}[0]", "id": "good", "valid": True},
        {"source": f"{path}[1]", "id": "bad", "valid": False},
    ]
    assert doc["problems"] == [
        {
            "source": f"{path}[1]",
            "monitor": "bad",
            "path": "$.triggerParam.triggers[0].data.op",
            "message": "unknown operator 'greaterThen' (did you mean 'greaterThan'?)",
        }
    ]
    assert doc["vehicle"]["assumed"] is True
    assert doc["vehicle"]["buses"]["can0"]["dbc"][0].endswith("demo_vehicle.dbc")


def test_configuration_errors_exit_2_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "agent.toml"
    broken.write_text('vin = 7\n[mqtt]\nport = "x"\n')
    for args in (
        ["check", "--config", broken],
        ["check", "--config", broken, "--json"],
        [
            "replay",
            "--config",
            broken,
            "--can",
            DRIVE / "drive.log",
            "--monitors",
            DRIVE / "monitors.json",
        ],
        ["run", "-c", broken],
    ):
        code, out, err = run(capsys, *args)
        assert code == 2, (args, out, err)
        assert "$.vin" in out + err


def test_versions_and_subcommand_help() -> None:
    assert process("agent", "--version").stdout.strip().startswith("edgemon-agent ")
    assert process("backend", "--version").stdout.strip().startswith("edgemon-backend ")
    helped = process("agent", "replay", "--help")
    assert helped.returncode == 0
    assert "--trace-format {text,json}" in helped.stdout and "--plot FILE.png" in helped.stdout
    assert "exit codes: 0 success; 1 problems found" in process("agent", "--help").stdout
    assert process("agent", "status", "--help").returncode == 0


def test_gps_replay_speed_in_the_configuration(tmp_path: Path) -> None:
    nmea = DRIVE / "drive.nmea"
    config = tmp_path / "agent.toml"
    base = 'vin = "VF3TEST0000000001"\n[[can]]\nchannel = "vcan0"\nreplay_speed = 5\n'
    config.write_text(f'{base}[gps]\nport = "{nmea}"\nreplay_speed = 5\n')
    loaded = load_config(config, env={})
    assert loaded.gps is not None and loaded.gps.speed == 5.0
    config.write_text(f'{base}[gps]\nport = "{nmea}"\nreplay_speed = 5\nreplay_pace = "fast"\n')
    with pytest.raises(ConfigError, match="give replay_speed or replay_pace, not both"):
        load_config(config, env={})


def test_status_view_copes_with_an_odd_live_file() -> None:
    from agent.commands.status import render

    odd = {
        "vin": "V",
        "broker": "nope",
        "buses": {"can0": 5},
        "signals": {"a": "x", "b": {"value": 1.5, "ageSeconds": "old", "stale": True}},
        "monitors": [1, 2],
    }
    lines = render(odd, written_ago=60.0)
    assert "not rewritten for 60 s: is the agent running?" in lines[0]
    assert lines[1].startswith("broker ? NOT CONNECTED")
    assert "bus can0 active" in lines
    assert any(line.split() == ["b", "1.5", "never", "stale"] for line in lines)


def test_the_recording_for_a_plot_is_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.plot
    import agent.trace

    recordings = []
    monkeypatch.setattr(agent.trace, "MAX_POINTS", 50)
    monkeypatch.setattr(agent.plot, "write_png", lambda rec, _path: recordings.append(rec))
    code, _, _ = run(
        capsys, "replay", "--can", DRIVE / "drive.log", "--nmea", DRIVE / "drive.nmea",
        "--monitors", DRIVE / "monitors.json", "--plot", tmp_path / "x.png",
    )  # fmt: skip
    assert code == 0
    (recording,) = recordings
    kept = len(recording.values) + len(recording.fixes) + len(recording.truths)
    assert kept + len(recording.events) == 50 and recording.dropped > 0
