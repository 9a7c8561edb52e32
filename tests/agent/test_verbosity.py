"""``-v``/``-q`` on every ``edgemon-agent`` command, and what ``run -q`` leaves in its log."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.__main__ import COMMANDS, build_parser
from agent.commands import chosen_level
from tests.agent.daemon.conftest import agent_toml
from tests.conftest import ROOT

REQUIRED = {
    "run": ["-c", "agent.toml"],
    "replay": ["--monitors", "m.json"],
    "check": [],
    "simulate": ["--scenario", "s.toml"],
    "obd": ["scan", "--channel", "vcan0"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("before", "after", "level"),
    [
        ([], [], None),
        ([], ["-v"], logging.DEBUG),
        ([], ["-q"], logging.WARNING),
        ([], ["-qq"], logging.ERROR),
        (["-q"], [], logging.WARNING),
        (["--debug"], ["-q"], logging.DEBUG),
        ([], ["--verbose", "--quiet"], None),
    ],
)
def test_every_command_takes_verbose_and_quiet(
    command: str, before: list[str], after: list[str], level: int | None
) -> None:
    argv = [*before, command, *after, *REQUIRED[command]]
    args = build_parser(argv).parse_args(argv)
    assert chosen_level(args) == level


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_quiet_logs_warnings_but_not_the_story(tmp_path: Path) -> None:
    """No broker on the port: the refused connection (a warning) shows, "agent up" (INFO) not."""
    config = agent_toml(tmp_path / "agent", _free_port())
    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-q", "-c", str(config)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "refused" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log.read_text()
    assert "WARNING agent.uplink.mqtt: MQTT: connection to 127.0.0.1:" in text
    assert "(broker down?)" in text and "certificate" not in text
    assert "agent up" not in text and "INFO" not in text
