"""Helpers of the vcan tests: can-utils calls, demo-vehicle frames, kernel receive lists."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cantools

from agent.can.dbc import DEMO_DBC


def sh(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def cansend(channel: str, frame: str) -> None:
    done = sh("cansend", channel, frame)
    assert done.returncode == 0, done.stderr


@functools.cache
def _demo_db() -> Any:
    return cantools.database.load_file(DEMO_DBC)


def demo_frame(message: str, **values: float) -> str:
    """A frame of the demo DBC in cansend syntax (``1A0#0011...``); unnamed signals are 0."""
    msg = _demo_db().get_message_by_name(message)
    signals = {signal.name: 0 for signal in msg.signals}
    signals.update(values)
    data = msg.encode(signals, strict=False)
    width = 8 if msg.is_extended_frame else 3
    return f"{msg.frame_id:0{width}X}#{data.hex().upper()}"


def engine_frame(oil_temp: float) -> str:
    """EngineData with the engine running and the given oil temperature."""
    return demo_frame(
        "EngineData", OilTemp=oil_temp, EngineRunning=1, PowertrainStatus=2, EngineSpeed=800
    )


def demo_frame_id(message: str) -> int:
    frame_id: int = _demo_db().get_message_by_name(message).frame_id
    return frame_id


def kernel_receivers(channel: str) -> list[tuple[int, int]]:
    """(can_id, mask) of every CAN_RAW receiver registered on ``channel`` (/proc/net/can)."""
    found = []
    for path in sorted(Path("/proc/net/can").glob("rcvlist_*")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == channel:
                with contextlib.suppress(ValueError):
                    found.append((int(parts[1], 16), int(parts[2], 16)))
    return found


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@contextlib.contextmanager
def process(argv: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A background process writing to ``log``; SIGTERM then SIGKILL by its PID at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Forked:
    """A forked child, with the part of Popen's interface the tests use (by PID)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(0.05)
        return code

    def terminate(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


def _child_main(args: list[str], log: Path) -> int:
    """In the child: stdout/stderr and logging to ``log``, then the CLI's own ``main``."""
    from agent.__main__ import main

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    return main(args)


@contextlib.contextmanager
def agent_cli(args: list[str], log: Path) -> Iterator[Forked]:
    """``edgemon-agent ARGS`` in a forked child of this interpreter: the CLI's real ``main``
    (argument parsing, signal handlers, exit code) without a second interpreter start-up,
    which costs ~20 s under QEMU TCG. Call with no threads running. SIGTERM/SIGKILL by PID."""
    import agent.__main__  # noqa: F401 - warm the parent before forking

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns into pytest
        code = 1
        try:
            code = _child_main(args, log)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    child = Forked(pid)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


def unit_commands(text: str, key: str) -> list[tuple[bool, list[str]]]:
    """(ignore_failure, argv) of every ``key=`` line of the [Service] section, in order."""
    commands = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and line.startswith(f"{key}="):
            command = line.split("=", 1)[1]
            prefixes = command[: len(command) - len(command.lstrip("-@:+!"))]
            commands.append(("-" in prefixes, shlex.split(command[len(prefixes) :])))
    return commands
