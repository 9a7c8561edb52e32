"""`make demo` as a newcomer runs it (here with a shortened drive): exit 0, delivered webhooks
shown, and no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "tests" / "data" / "scenarios" / "demo-quick.toml"

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_demo_delivers_webhooks_exits_0_and_leaves_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo", "--scenario", str(QUICK), "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "webhook #1" in out and "webhook #2" in out and "signature verified" in out
    assert "events fired by the agent (seen on MQTT): 2" in out
    assert "delivered to the webhook receiver:        2" in out
    assert "still alive" not in out
    assert _processes_mentioning(str(workdir)) == []
    assert not workdir.exists()  # the throwaway CA and configs are gone
