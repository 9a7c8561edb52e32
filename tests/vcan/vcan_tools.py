"""Helpers of the vcan tests: can-utils calls, demo-vehicle frames, kernel receive lists."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cantools

from agent.dbc import DEMO_DBC


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
