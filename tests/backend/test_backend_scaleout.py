"""Three backend workers (ingest + dispatcher) on one real PostgreSQL, one real mosquitto and a
real HTTPS receiver, through the faults of a fleet's day:

- a drive's events from six vehicles (two in each worker's ingest shard) are all delivered;
- the worker holding a delivery on the wire is SIGKILLed (the receiver holds that request and
  tells us, by its TCP port, which process sent it); its lease runs out and another worker
  sends the same delivery again: same ``webhook-id``, same body;
- the broker restarts (its sessions persist, as a clustered broker's do) and events are
  published before the workers have reconnected; the killed worker restarts (systemd's
  ``Restart=``) and takes its shard's backlog from its session.

Nothing is lost, nothing is delivered twice except as that repeat, and each vehicle's events
arrive in order (``[dispatcher] in_order``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json, uuid7
from backend.ingest.intake import shard_of
from backend.store.postgres import PostgresStore
from backend.store.records import MonitorRecord
from tests.backend.backend_receiver import CertAuthority, Received, Receiver, Reply
from tests.backend.conftest import (
    FLEET,
    SECRET,
    T0,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
EVENTS = 24  # per vehicle, published in three rounds
LEASE = 3.0


class PersistentMosquitto(Mosquitto):
    """Sessions and their queued messages survive a restart (``persistence true``)."""

    def config_text(self) -> str:
        # "user root": as root mosquitto would switch to its own user, which cannot write here
        persistent = f"persistence true\npersistence_location {self.workdir}/\nuser root"
        return super().config_text().replace("persistence false", persistent)


def _vins() -> list[str]:
    """Two vehicles per ingest shard."""
    chosen: dict[int, list[str]] = defaultdict(list)
    n = 0
    while any(len(chosen[s]) < 2 for s in range(WORKERS)):
        vin = f"VF3SCALE0000{n:05d}"
        n += 1
        if len(chosen[shard_of(vin, WORKERS)]) < 2:
            chosen[shard_of(vin, WORKERS)].append(vin)
    return [vin for s in range(WORKERS) for vin in chosen[s]]


def _config(tmp_path: Path, index: int, url: str, broker: Mosquitto, ca: CertAuthority) -> Path:
    path = tmp_path / f"worker{index}.toml"
    path.write_text(
        f'[store]\nurl = "{url}"\npool_size = 3\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "scale-{index}"\n'
        f'share_group = ""\nshard_count = {WORKERS}\nshard_index = {index}\n'
        "session_expiry = 600\n"
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{ca.ca_file}"\n'
        'allow_networks = ["127.0.0.0/8"]\ntimeout = 2.0\n'
        f"[dispatcher]\npoll_interval = 0.05\nlease = {LEASE}\nin_order = true\n"
    )
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "backend", "run", "-c", str(config),
             "--role", "ingest", "--role", "dispatcher"],
            cwd=ROOT, env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _owner_of_port(port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the local TCP port ``port`` (``/proc/net/tcp``, socket inodes)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with_fds = Path(f"/proc/{pid}/fd")
        for fd in with_fds.iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return pid
            except OSError:
                continue
    return None


def _event(request: Received) -> tuple[str, int]:
    (event,) = json.loads(request.body)["events"]
    literal = event["values"][0]["value"]["body"]["literalValue"]
    return str(event["vin"]), int(literal)


@pytest.fixture
def workers_log(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "workers.log"
    yield log
    if os.environ.get("EDGEMON_SHOW_LOGS") and log.exists():
        print(log.read_text()[-20000:])


def test_three_workers_survive_a_sigkill_and_a_broker_restart(
    tmp_path: Path,
    postgres_url: str,
    test_ca: CertAuthority,
    workers_log: Path,
) -> None:
    vins = _vins()
    trap_vin, trap_value = vins[0], 3
    trapped = threading.Event()
    trap: list[Received] = []

    def respond(request: Received) -> Reply:
        if not trapped.is_set() and _event(request) == (trap_vin, trap_value):
            trap.append(request)
            trapped.set()
            return Reply(200, delay=60)  # held on the wire until its sender is killed
        return Reply(200, delay=0.01)

    rx = Receiver(test_ca.server_context(), respond=respond).start()
    broker = PersistentMosquitto(tmp_path / "broker").start()
    store = PostgresStore(postgres_url, pool_size=1)
    mid = uuid7()
    store.create_monitor(
        MonitorRecord(mid, "fleet", FLEET, monitor_definition(rx.url), "Running", T0, T0)
    )
    for vin in vins:
        store.put_vehicle(vin, FLEET, T0)
    configs = [_config(tmp_path, i, postgres_url, broker, test_ca) for i in range(WORKERS)]
    procs = [_start(c, workers_log) for c in configs]
    topics = Topics()
    client = publisher(broker)

    def publish_round(first: int, last: int) -> None:
        for value in range(first, last):
            for vin in vins:
                event = make_event(mid, vin=vin, at=time.time(), value=str(value))
                publish(client, topics.events(vin), event_to_json(event))

    try:
        _wait(lambda: workers_log.read_text().count("ingest subscribed") >= WORKERS, "subscribed")
        publish_round(0, EVENTS // 3)
        _wait(trapped.is_set, "the trapped request arrived")
        owner = _owner_of_port(trap[0].peer_port, [p.pid for p in procs])
        assert owner is not None, "no worker holds the trapped connection"
        killed = next(i for i, p in enumerate(procs) if p.pid == owner)
        procs[killed].send_signal(signal.SIGKILL)  # leased, on the wire, not recorded
        procs[killed].wait(10)

        broker.restart()  # sessions persist; the workers reconnect within a few seconds
        stop_network_loop(client)
        client.disconnect()
        client = publisher(broker)
        publish_round(EVENTS // 3, 2 * EVENTS // 3)  # some before the workers are back
        procs[killed] = _start(configs[killed], workers_log)  # systemd's Restart=always
        publish_round(2 * EVENTS // 3, EVENTS)

        expected = {(vin, value) for vin in vins for value in range(EVENTS)}

        def missing() -> list[tuple[str, int]]:
            return sorted(expected - {_event(r) for r in list(rx.requests)})

        try:
            _wait(lambda: not missing(), "every event delivered", timeout=60)
        except TimeoutError:
            raise AssertionError(f"not delivered: {missing()}; {store.depth()}") from None
        _wait(lambda: store.depth()["pending"] == 0, "every result recorded")
    finally:
        stop_network_loop(client)
        client.disconnect()
        for proc in procs:
            _stop(proc)
        broker.stop()
        rx.stop()

    requests = list(rx.requests)
    # Nothing twice except as a repeat of one delivery: same webhook-id, same body.
    by_event: dict[tuple[str, int], list[Received]] = defaultdict(list)
    for request in requests:
        by_event[_event(request)].append(request)
    assert set(by_event) == expected
    repeated = {e: rs for e, rs in by_event.items() if len(rs) > 1}
    for event, sent in repeated.items():
        assert len({r.headers["webhook-id"] for r in sent}) == 1, event
        assert len({r.body for r in sent}) == 1, event
    # The trapped delivery went out again after its lease ran out (a takeover), same id.
    assert (trap_vin, trap_value) in repeated
    assert (
        repeated[(trap_vin, trap_value)][0].headers["webhook-id"] == trap[0].headers["webhook-id"]
    )
    # Each vehicle's events in order (a repeat comes right after its first copy).
    for vin in vins:
        arrived = [value for v, value in map(_event, requests) if v == vin]
        collapsed = [v for i, v in enumerate(arrived) if i == 0 or arrived[i - 1] != v]
        assert collapsed == list(range(EVENTS)), (vin, arrived)
    assert store.depth() == {"open": 0, "pending": 0, "retrying": 0, "dead": 0}
    store.close()
