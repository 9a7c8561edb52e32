"""The backend under systemd (``Type=notify``, ``WatchdogSec=``): READY once, watchdog pings
while every part works, none once a part has died, so systemd restarts the process. A real
AF_UNIX datagram socket stands for systemd's notify socket."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sdnotify import Notifier
from backend.app import watchdog


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = Path(tempfile.mkdtemp(prefix="edgemon-wd-", dir="/tmp"))  # AF_UNIX: short paths
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        yield sock, str(path)
    finally:
        sock.close()
        path.unlink()
        folder.rmdir()


def _received(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(10)


def test_pings_stop_once_a_part_has_died(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    failing: list[str] = []
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # ping every 50 ms

    async def scenario() -> tuple[list[str], list[str]]:
        stop = asyncio.Event()
        task = asyncio.create_task(watchdog(lambda: list(failing), stop, notifier))
        first = [(await asyncio.to_thread(sock.recv, 4096)).decode() for _ in range(3)]
        failing.append("ingest worker")
        await asyncio.sleep(0.3)
        _received(sock)  # whatever was in flight when the part died
        await asyncio.sleep(0.3)
        after = _received(sock)
        stop.set()
        await task
        return first, after

    first, after = asyncio.run(scenario())  # READY, then two pings; after the death, none
    assert first[0].startswith("READY=1")
    assert first[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert after and all(m == "STATUS=failing: ingest worker" for m in after)


def test_outside_systemd_it_returns_at_once() -> None:
    async def run() -> None:
        await asyncio.wait_for(watchdog(list, asyncio.Event(), Notifier({})), 5)

    asyncio.run(run())


def test_a_broker_outage_keeps_the_pings_and_changes_the_status_line_once(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    note = ["running"]
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    async def scenario() -> list[str]:
        stop = asyncio.Event()
        task = asyncio.create_task(watchdog(list, stop, notifier, note=lambda: note[0]))
        seen = [(await asyncio.to_thread(sock.recv, 4096)).decode() for _ in range(2)]
        note[0] = "running; no broker for ingest"
        seen += [(await asyncio.to_thread(sock.recv, 4096)).decode() for _ in range(4)]
        note[0] = "running"
        seen += [(await asyncio.to_thread(sock.recv, 4096)).decode() for _ in range(4)]
        stop.set()
        await task
        return seen

    seen = asyncio.run(scenario())
    statuses = [m for m in seen if m.startswith("STATUS=")]
    assert statuses == ["STATUS=running; no broker for ingest", "STATUS=running"]
    assert seen.count("WATCHDOG=1") == len(seen) - 1 - len(statuses)  # pings never stopped
