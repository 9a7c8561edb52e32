"""The real `edgemon-agent run` process: SIGKILL mid-burst, sd_notify, watchdog, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.wire import Topics, event_from_json
from tests.agent.daemon.conftest import VIN, Collector, agent_toml, oil_monitor, write_oil_log
from tests.conftest import ROOT
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "-c", str(config)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=(config.parent / f"agent-{len(started)}.log").open("wb"),
            stderr=(config.parent / f"agent-{len(started)}.err").open("wb"),
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _unique(payloads: list[bytes]) -> dict[str, int]:
    """event id -> seq, in arrival order of first occurrences; a repeat must keep its seq."""
    seen: dict[str, int] = {}
    for payload in payloads:
        event = event_from_json(payload)
        assert seen.setdefault(event.event_id, event.seq) == event.seq
    return seen


def _settle(collector: Collector, quiet: float = 0.5) -> None:
    count = -1
    while count != len(collector.messages):
        count = len(collector.messages)
        time.sleep(quiet)


def test_sigkill_mid_burst_loses_nothing_committed(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    collector = collector_factory(
        mosquitto.host, mosquitto.port, [TOPICS.events(VIN), TOPICS.status(VIN)]
    )
    log = write_oil_log(tmp_path / "burst.log", 4000, step=0.0005)
    folder = tmp_path / "agent"
    burst = agent_toml(
        folder,
        mosquitto.port,
        can=f'interface = "virtual"\nchannel = "k1"\nreplay = "{log}"',
        monitors=[oil_monitor("120", id="oil")],
    )
    proc = processes(burst)
    collector.wait_for(lambda c: len(c.payloads("/events")) >= 50, timeout=60)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    # the broker notices the dead connection and publishes the agent's last will
    collector.wait_for(lambda c: any(not json.loads(p)["online"] for p in c.payloads("/status")))
    _settle(collector)  # what the broker acknowledged before the kill is still on its way
    received_before = _unique(collector.payloads("/events"))
    with sqlite3.connect(folder / "state" / "outbox.sqlite") as db:
        pending = dict(db.execute("SELECT event_id, seq FROM events").fetchall())
    committed = {**received_before, **pending}
    assert len(received_before) < 2000, "the burst finished before the kill: nothing tested"
    # restart without the replay: the outbox alone must deliver the rest
    quiet = agent_toml(folder, mosquitto.port, monitors=[oil_monitor("120", id="oil")])
    processes(quiet)
    collector.wait_for(lambda c: set(committed) <= set(_unique(c.payloads("/events"))), timeout=60)
    final = _unique(collector.payloads("/events"))
    seqs = [final[i] for i in final]
    assert seqs == sorted(seqs), "first occurrences out of order"
    assert sorted(committed.values()) == list(range(1, len(committed) + 1))
    assert set(final) == set(committed)


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    return sock


def _read_until(sock: socket.socket, wanted: bytes) -> list[bytes]:
    got: list[bytes] = []
    while not any(wanted in m for m in got):
        got.append(sock.recv(4096))
    return got


def test_notify_watchdog_sighup_and_sigterm(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    collector = collector_factory(
        mosquitto.host,
        mosquitto.port,
        [TOPICS.status(VIN), f"{TOPICS.prefix}/vehicles/{VIN}/monitors/+/state"],
    )
    notify = _notify_socket(tmp_path / "notify")
    folder = tmp_path / "agent"
    config = agent_toml(folder, mosquitto.port, monitors=[oil_monitor("120", id="first")])
    proc = processes(
        config, env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    )
    ready = _read_until(notify, b"READY=1")
    assert any(b"STATUS=" in m for m in ready)
    pings = _read_until(notify, b"WATCHDOG=1")
    pings += _read_until(notify, b"WATCHDOG=1")
    assert sum(m.count(b"WATCHDOG=1") for m in pings) >= 2

    (folder / "monitors.json").write_text(
        json.dumps([oil_monitor("120", id="first"), oil_monitor("125", id="second")])
    )
    collector.wait_for(lambda c: any(t.endswith("/first/state") for t, _, _ in c.messages))
    proc.send_signal(signal.SIGHUP)
    collector.wait_for(lambda c: any(t.endswith("/second/state") for t, _, _ in c.messages))

    proc.send_signal(signal.SIGTERM)
    stopping = _read_until(notify, b"STOPPING=1")
    assert stopping
    assert proc.wait(10) == 0
    logged = (folder / "agent-0.log").read_text()
    assert "agent up" in logged and "agent stopped" in logged  # logs on stdout
    last = json.loads(collector.payloads("/status")[-1])
    assert last["online"] is False
    notify.close()


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('vin = "bad vin"\nclock = "sundial"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "-c", str(tmp_path / "agent.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "$.vin" in proc.stderr and "$.clock" in proc.stderr
    assert "Traceback" not in proc.stderr
