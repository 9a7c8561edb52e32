"""The unit files pass `systemd-analyze verify` (with ExecStart pointed at this checkout)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNITS = ROOT / "systemd"
INSTALLED = "/opt/edgemon/venv/bin/"  # the gateway's venv (scripts/install-gateway.sh)
BACKEND_INSTALLED = "/opt/edgemon/.venv/bin/"


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    scripts = Path(sys.executable).parent
    assert (scripts / "edgemon-agent").exists()
    names = []
    for unit in sorted(UNITS.glob("*.service")):
        text = unit.read_text().replace(INSTALLED, f"{scripts}/")
        text = text.replace(BACKEND_INSTALLED, f"{scripts}/")
        name = unit.name.replace("@.", "@can0.")  # verify a template through one instance
        (tmp_path / name).write_text(text)
        names.append(name)
    assert {"edgemon-agent.service", "edgemon-backend.service", "edgemon-vcan.service"} <= set(
        names
    )
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys and bad values; any message at all is a failure here
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and proc.stdout.strip() == ""


def test_agent_unit_is_notify_with_watchdog_and_can_serial_access() -> None:
    service = _unit("edgemon-agent.service")["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always"
    assert service["StateDirectory"] == "edgemon"
    assert "dialout" in service["SupplementaryGroups"]
    families = service["RestrictAddressFamilies"].split()
    assert {"AF_CAN", "AF_NETLINK", "AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert "PrivateNetwork" not in service and "PrivateDevices" not in service
    assert service["ExecStart"].startswith(INSTALLED + "edgemon-agent run -c ")


def test_can_network_file_sets_bitrate_and_restart() -> None:
    network = _unit("80-can0.network")
    assert network["Match"]["Name"] == "can0"
    assert network["CAN"]["BitRate"] and network["CAN"]["RestartSec"]
    template = (UNITS / "edgemon-can@.service").read_text()
    assert "restart-ms" in template and "bitrate" in template
    # listen-only on by default, in both ways of bringing the link up
    assert network["CAN"]["ListenOnly"] == "yes"
    assert "listen-only ${LISTEN_ONLY}" in template and "LISTEN_ONLY=on" in template
