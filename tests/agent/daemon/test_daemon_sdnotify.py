"""agent.sdnotify against a local notify socket (path and abstract)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agent.sdnotify import Notifier


def _listen(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


def test_messages_reach_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    server = _listen(path)
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval == 2.0
    assert notifier.ready("up")
    assert server.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.watchdog()
    assert server.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert server.recv(4096) == b"STOPPING=1"
    notifier.close()
    server.close()


def test_abstract_socket_and_watchdog_pid() -> None:
    name = f"edgemon-test-{os.getpid()}"
    server = _listen(b"\0" + name.encode())
    notifier = Notifier(
        {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert notifier.watchdog_interval is None  # the watchdog is someone else's
    assert notifier.status("hello")
    assert server.recv(4096) == b"STATUS=hello"
    server.close()


def test_outside_systemd_is_a_no_op_and_errors_are_counted(tmp_path: Path) -> None:
    assert Notifier({}).ready() is False
    missing = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert missing.ready() is False
    assert missing.failures == 1
