"""The documented gateway install (scripts/install-gateway.sh), run into a throwaway root.

Offline, as on CI: the edgemon wheel is built from this checkout without build isolation (the
dev environment holds setuptools) and installed from a wheelhouse with ``--no-index``, the offline
variant of the docs. The agent's dependencies are not downloaded either: the installed venv sees
those of the project's .venv through PYTHONPATH (a directory of links that leaves out edgemon's
own editable install, so that every ``agent`` module comes from the installed wheel).
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from agent.wire import Topics
from tests.agent.daemon.conftest import Collector
from tests.conftest import DATA, ROOT
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "install-gateway.sh"
DRIVE = DATA / "drive"
VENV = "/opt/edgemon/venv"
CONF = "/etc/edgemon"


@dataclass(frozen=True)
class Installed:
    root: Path
    env: dict[str, str]
    log: str

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def agent(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.path(VENV) / "bin" / "edgemon-agent"), *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,
            timeout=120,
            check=False,
        )


def _dependencies(into: Path) -> Path:
    """Links to the project's installed packages, without edgemon itself nor pip."""
    site = Path(sysconfig.get_paths()["purelib"])
    into.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("edgemon", "__editable__", "pip", "_distutils_hack", "distutils-")):
            continue
        (into / entry.name).symlink_to(entry)
    return into


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if shutil.which("systemd-sysusers") is None or shutil.which("systemctl") is None:
        pytest.fail("systemd is not installed: make system-packages")
    work = tmp_path_factory.mktemp("install")
    wheelhouse = work / "wheelhouse"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "-w", str(wheelhouse), str(ROOT)])  # fmt: skip
    root = work / "root"
    root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(_dependencies(work / "deps"))}
    env.pop("PYTHONHOME", None)
    log = _run(
        ["sh", str(SCRIPT), "--root", str(root), "--wheelhouse", str(wheelhouse),
         "--pip-arg", "--no-deps", "--python", sys.executable],
        env,
    )  # fmt: skip
    yield Installed(root, env, log)


def test_install_lays_out_user_config_state_and_units(installed: Installed) -> None:
    conf = installed.path(CONF)
    assert conf.stat().st_mode & 0o777 == 0o750
    assert (conf / "agent.toml").stat().st_mode & 0o777 == 0o640
    # the DBC set in use is a link to a versioned set: updates and rollback switch the link
    link = conf / "dbc"
    assert link.is_symlink() and os.readlink(link).startswith("dbc.d/shipped-")
    assert (link / "demo_vehicle.dbc").read_bytes() == (ROOT / "dbc/demo_vehicle.dbc").read_bytes()
    # the example configuration points at files that exist after the install
    toml = (conf / "agent.toml").read_text()
    for wanted in ("/etc/edgemon/dbc/demo_vehicle.dbc", "/etc/edgemon/dbc/demo_vehicle.map.toml"):
        assert f'"{wanted}"' in toml
        assert installed.path(wanted).is_file()
    # listen-only on by default for the CAN unit
    env_file = (conf / "can-can0.env").read_text().splitlines()
    assert "LISTEN_ONLY=on" in env_file and "BITRATE=500000" in env_file
    # the system user, member of dialout, and no backend user on a gateway
    passwd = installed.path("/etc/passwd").read_text()
    assert any(line.startswith("edgemon:") for line in passwd.splitlines())
    assert "edgemon-backend" not in passwd
    dialout = next(
        line for line in installed.path("/etc/group").read_text().splitlines()
        if line.startswith("dialout:")
    )  # fmt: skip
    assert "edgemon" in dialout.split(":")[3].split(",")
    # enabled: the agent at boot, the CAN link when can0 appears
    units = installed.path("/etc/systemd/system")
    assert (units / "multi-user.target.wants" / "edgemon-agent.service").is_symlink()
    wants_can = units / "sys-subsystem-net-devices-can0.device.wants" / "edgemon-can@can0.service"
    assert wants_can.is_symlink()
    # only the agent's dependencies: none of the backend's nor the dev tools
    site = next(installed.path(VENV).glob("lib/python3*/site-packages"))
    names = {p.name.split("-")[0].lower() for p in site.iterdir()}
    assert "edgemon" in names and not names & {"starlette", "uvicorn", "httpx", "mypy", "pytest"}


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_installed_units_verify_and_run_the_installed_venv(
    installed: Installed, tmp_path: Path
) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: make system-packages")
    units = installed.path("/etc/systemd/system")
    agent_unit = _unit(units / "edgemon-agent.service")
    exec_start = agent_unit["Service"]["ExecStart"].split()
    assert exec_start[0] == f"{VENV}/bin/edgemon-agent" and installed.path(exec_start[0]).is_file()
    assert exec_start[1:] == ["run", "-c", f"{CONF}/agent.toml"]
    # no network at boot must not hold the agent
    assert "network-online.target" not in agent_unit["Unit"].get("Wants", "")
    assert "network-online.target" not in agent_unit["Unit"].get("After", "")
    # verify as on the gateway: the installed venv's path mapped into the throwaway root
    names = []
    for unit in ("edgemon-agent.service", "edgemon-can@.service"):
        text = (units / unit).read_text().replace(VENV, str(installed.path(VENV)))
        name = unit.replace("@.", "@can0.")
        (tmp_path / name).write_text(text)
        names.append(name)
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""
    can = (units / "edgemon-can@.service").read_text().splitlines()
    assert any(line.startswith("Environment=") and "LISTEN_ONLY=on" in line for line in can)
    assert any(
        line.startswith("ExecStart=") and "listen-only ${LISTEN_ONLY}" in line for line in can
    )


def _finish_configuration(installed: Installed) -> Path:
    """What the docs ask the user to do after the install: TLS material and monitors in
    /etc/edgemon. The config's absolute paths are then mapped into the throwaway root."""
    conf = installed.path(CONF)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(conf / "ca.pem"))
    client = ca.issue_cert("VF3DEMO0000000001")
    client.cert_chain_pems[0].write_to_path(str(conf / "client.pem"))
    client.private_key_pem.write_to_path(str(conf / "client.key"))
    shutil.copyfile(DRIVE / "monitors.json", conf / "monitors.json")  # monitors_file, relative
    rooted = conf / "agent-rooted.toml"  # beside agent.toml: relative paths resolve the same
    text = (conf / "agent.toml").read_text().replace(f'"{CONF}/', f'"{conf}/')
    rooted.write_text(text)
    return rooted


def test_installed_agent_checks_its_config_and_decodes_the_recorded_drive(
    installed: Installed,
) -> None:
    config = _finish_configuration(installed)
    check = installed.agent("check", "--config", config)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "check: 6 of 6 monitor(s) valid, 0 problem(s)" in check.stderr
    which = subprocess.run(
        [str(installed.path(VENV) / "bin" / "python"), "-c", "import agent; print(agent.__file__)"],
        capture_output=True,
        text=True,
        env=installed.env,
        cwd=installed.root,
        check=True,
    )
    # the installed code, not this checkout's
    assert Path(which.stdout.strip()).resolve().is_relative_to(installed.path(VENV).resolve())
    replay = installed.agent(
        "replay", "--config", config,
        "--can", DRIVE / "drive.log", "--nmea", DRIVE / "drive.nmea",
        "--monitors", installed.path(CONF) / "monitors.json", "--vin", "VF3DEMO0000000001",
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    # the golden events of the drive, with the fleet of the installed configuration
    expected = [json.loads(line) for line in (DRIVE / "expected.jsonl").read_text().splitlines()]
    got = [json.loads(line) for line in replay.stdout.splitlines()]
    assert len(got) == len(expected) > 0
    assert got == [{**event, "fleetId": "fleet-1"} for event in expected]


def test_install_again_upgrades_into_a_new_venv_keeps_the_config_and_rolls_back(
    installed: Installed,
) -> None:
    conf = installed.path(CONF)
    link = installed.path(VENV)
    first = os.readlink(link)
    assert first.startswith("venv-") and link.is_symlink()
    edited = (conf / "agent.toml").read_text().replace("fleet-1", "fleet-edited")
    (conf / "agent.toml").write_text(edited)
    wheelhouse = installed.root.parent / "wheelhouse"
    log = _run(
        ["sh", str(SCRIPT), "--root", str(installed.root), "--wheelhouse", str(wheelhouse),
         "--pip-arg", "--no-deps", "--python", sys.executable],
        installed.env,
    )  # fmt: skip
    assert "kept /etc/edgemon/agent.toml" in log and "kept /etc/edgemon/dbc -> " in log
    assert (conf / "agent.toml").read_text() == edited
    second = os.readlink(link)
    assert second != first and os.readlink(installed.path(VENV + ".previous")) == first
    assert installed.agent("--version").stdout.startswith("edgemon-agent ")
    back = _run(["sh", str(SCRIPT), "--root", str(installed.root), "--rollback"], installed.env)
    assert f"-> {first} (was {second})" in back
    assert os.readlink(link) == first and os.readlink(installed.path(VENV + ".previous")) == second


def test_installed_package_finds_its_shipped_dbc_set(installed: Installed) -> None:
    code = "from agent import shipped; print(shipped.demo_dbc()); print(shipped.demo_map())"
    found = subprocess.run(
        [str(installed.path(VENV) / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        env=installed.env,
        cwd=installed.root,
        check=True,
    ).stdout.split()
    share = installed.path(VENV).resolve() / "share" / "edgemon" / "dbc"
    resolved = [Path(p).resolve() for p in found]
    assert resolved == [share / "demo_vehicle.dbc", share / "demo_vehicle.map.toml"]
    assert all(Path(p).is_file() for p in found)


def _for_the_bench(config: Path, broker_port: int) -> Path:
    """The installed configuration with what a bench changes: the recorded drive instead of can0
    and the receiver, a local plain broker instead of the fleet's."""
    text = config.read_text()
    edits = {
        'channel = "can0"': f'channel = "can0"\nreplay = "{DRIVE / "drive.log"}"\nreplay_speed = 0',
        'port = "/dev/ttyACM0"': f'port = "{DRIVE / "drive.nmea"}"\nreplay_pace = "fast"',
        'host = "broker.example.com"': 'host = "127.0.0.1"',
        "port = 8883 ": f"port = {broker_port} ",
    }
    lines = text.splitlines()
    for old, new in edits.items():  # the first active (uncommented) line of each
        index = next(i for i, line in enumerate(lines) if line.startswith(old))
        lines[index] = lines[index].replace(old, new)
    text = "\n".join(lines)
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith(("ca_file", "cert_file", "key_"))
    )
    bench = config.with_name("agent-bench.toml")
    bench.write_text(text + "\n")
    return bench


def test_the_unit_command_runs_the_drive_and_publishes_its_events(
    installed: Installed, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = _finish_configuration(installed)
    bench = _for_the_bench(config, mosquitto.port)
    unit = _unit(installed.path("/etc/systemd/system/edgemon-agent.service"))["Service"]
    argv = unit["ExecStart"].split()
    argv = [str(installed.path(argv[0])), *argv[1:-1], str(bench)]  # the rooted paths
    collector = Collector(mosquitto.host, mosquitto.port, [Topics().events("VF3ABCDEF12345678")])
    log = tmp_path / "agent.log"
    # what systemd gives the unit: its Environment= and $STATE_DIRECTORY
    env = dict(installed.env, STATE_DIRECTORY=str(tmp_path / "state"))
    env.update(item.split("=", 1) for item in unit["Environment"].split())
    (tmp_path / "state").mkdir()
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=installed.root, stdout=out, stderr=out)
    try:
        collector.wait_for(lambda c: len(c.payloads("/events")) >= 3, timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        collector.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    events = [json.loads(p) for p in collector.payloads("/events")]
    known = {m["id"] for m in json.loads((DRIVE / "monitors.json").read_text())}
    assert {e["monitorId"] for e in events} <= known
    assert "door-open" in {e["monitorId"] for e in events}  # decoded from the replayed frames
    text = log.read_text()
    assert "agent up: vin VF3ABCDEF12345678" in text and f"replay of {DRIVE}" in text
    assert "event seq 1 acknowledged by the broker" in text
    assert (tmp_path / "state" / "outbox.sqlite").is_file()  # the outbox in the state directory


def test_dbc_update_checks_the_new_set_switches_and_rolls_back(
    installed: Installed, tmp_path: Path
) -> None:
    _finish_configuration(installed)
    conf = installed.path(CONF)
    update = [str(ROOT / "scripts" / "dbc-update.sh"), "--root", str(installed.root)]
    before = os.readlink(conf / "dbc")
    # a set whose map names a signal its DBC lacks: refused, removed, the link untouched
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(ROOT / "dbc" / "demo_vehicle.dbc", broken)
    map_text = (ROOT / "dbc" / "demo_vehicle.map.toml").read_text()
    (broken / "demo_vehicle.map.toml").write_text(
        map_text.replace("EngineData.OilTemp", "EngineData.NoSuchSignal")
    )
    refused = subprocess.run(
        ["sh", *update, "install", "v2-broken", str(broken)],
        capture_output=True, text=True, env=installed.env, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "does not pass the check" in refused.stderr
    assert "NoSuchSignal" in refused.stdout + refused.stderr
    assert os.readlink(conf / "dbc") == before and not (conf / "dbc.d" / "v2-broken").exists()
    # a good set: checked with the configuration and monitors, then switched to
    good = tmp_path / "good"
    good.mkdir()
    for name in ("demo_vehicle.dbc", "demo_vehicle.map.toml"):
        shutil.copy(ROOT / "dbc" / name, good)
    log = _run(["sh", *update, "install", "v2", str(good)], installed.env)
    assert "check: 6 of 6 monitor(s) valid, 0 problem(s)" in log
    assert os.readlink(conf / "dbc") == "dbc.d/v2"
    assert os.readlink(conf / "dbc.previous") == before
    assert not list(conf.glob(".dbc-update-check*"))  # the temporary config is gone
    _run(["sh", *update, "rollback"], installed.env)
    assert os.readlink(conf / "dbc") == before
    assert os.readlink(conf / "dbc.previous") == "dbc.d/v2"
