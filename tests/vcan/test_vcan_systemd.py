"""The commands of systemd/edgemon-vcan.service, run as systemd would run them (in the VM)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.vcan.harness import VcanBus
from tests.vcan.vcan_tools import cansend, sh, unit_commands

pytestmark = pytest.mark.vcan

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgemon-vcan.service"


def run_unit(key: str) -> None:
    for ignore_failure, argv in unit_commands(UNIT.read_text(), key):
        done = sh(*argv)
        assert ignore_failure or done.returncode == 0, f"{key}={shlex.join(argv)}: {done.stderr}"


def _link(name: str) -> str:
    return sh("ip", "-d", "link", "show", name).stdout


def test_vcan_systemd_unit_creates_keeps_and_deletes_vcan0(vcan: VcanBus) -> None:
    if not vcan.admin:
        pytest.skip("creating and deleting vcan0 needs root")
    if not UNIT.is_file():
        pytest.skip(f"{UNIT} is not there")
    mtu = Path(f"/sys/class/net/{vcan.classic}/mtu").read_text().strip()
    assert vcan.classic == "vcan0", "the unit manages vcan0"
    try:
        assert sh("ip", "link", "delete", "vcan0").returncode == 0
        assert "vcan0" not in sh("ip", "link", "show").stdout
        for _ in range(2):  # start, then start again on an existing vcan0 (idempotent)
            run_unit("ExecStartPre")
            run_unit("ExecStart")
            details = _link("vcan0")
            assert "vcan" in details and ",UP" in details
        cansend("vcan0", "123#00")  # usable as soon as the unit has started
        run_unit("ExecStop")
        assert sh("ip", "link", "show", "vcan0").returncode != 0
    finally:
        if sh("ip", "link", "show", "vcan0").returncode != 0:
            sh("ip", "link", "add", "dev", "vcan0", "type", "vcan")
        sh("ip", "link", "set", "vcan0", "mtu", mtu)
        sh("ip", "link", "set", "up", "vcan0")
    assert Path("/sys/class/net/vcan0/mtu").read_text().strip() == mtu
