"""Several backend workers on PostgreSQL against one on SQLite, in the same run: deliveries per
second and publish -> webhook latency (issue 15).

One mosquitto, one HTTPS receiver process, one PostgreSQL (Debian's packages, started here as an
unprivileged user, durable: fsync and synchronous commits on, as in production). Configurations,
one after the other, each with a fresh store and its own monitor:

- ``sqlite_1``: one ``edgemon-backend run`` (ingest + dispatcher) on SQLite, the default;
- ``pg_1``, ``pg_2``, ``pg_3``: 1, 2, 3 workers (``--shard N`` of ``[mqtt] shard_count``) on
  PostgreSQL.

Every configuration delivers in order per vehicle (``[dispatcher] in_order``), 60 vehicles.

- ``scaleout_<conf>_deliveries_per_s``: a burst of events (QoS 1) as fast as the broker takes
  them, one event per webhook; events / (first publish -> last arrival); the median of
  ``--rounds`` rounds that interleave the configurations (workers restarted each round);
- ``scaleout_<conf>_latency_ms_p50``/``_p99``: events paced at ``--rate`` per second; for each,
  its arrival at the receiver minus its creation just before publishing;
- ``scaleout_<conf>_cpu_ms_per_delivery``: the workers' CPU (user + system) over the burst, per
  delivery; ``scaleout_<conf>_pg_cpu_ms_per_delivery``: PostgreSQL's (the postmaster and its
  children), which shares the same two cores.

Usage: .venv/bin/python bench/bench_scaleout.py [--events N] [--rate R] [--seconds S] [--rounds K]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from deliveries import ALLOW_LOOPBACK, SECRET, ReceiverProcess, monitor_definition  # noqa: E402
from harness import (  # noqa: E402
    adopt,
    cpu_seconds,
    guard,
    percentile,
    pick,
    spawn,
    stage,
    stop,
    write_results,
)
from machine import machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.model import Event, EventValue  # noqa: E402
from agent.paho_compat import stop_network_loop  # noqa: E402
from agent.wire import Topics, event_to_json, uuid7  # noqa: E402
from backend.store.postgres import PostgresStore  # noqa: E402
from backend.store.records import MonitorRecord, Store  # noqa: E402
from backend.store.sqlite import SqliteStore  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

FLEET = "bench-fleet"
VINS = [f"VF3SCALE{i:09d}" for i in range(60)]
CONFIGS = [("sqlite_1", 1), ("pg_1", 1), ("pg_2", 2), ("pg_3", 3)]


def payload(monitor_id: str, i: int) -> bytes:
    return event_to_json(
        Event(
            event_id=uuid7(),
            seq=i,
            vin=VINS[i % len(VINS)],
            fleet_id=FLEET,
            monitor_id=monitor_id,
            event_date=datetime.fromtimestamp(time.time(), tz=UTC),
            refresh=False,
            values=(EventValue("vehicle.engines.thermic.oil.temp", str(131 + i % 10)),),
        )
    )


def publisher(broker: Mosquitto, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-publisher-{name}")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its direct children (PostgreSQL's backends), from /proc."""
    total = cpu_seconds(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    total += cpu_seconds(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return total


def provision(store: Store, target: str) -> str:
    try:
        for vin in VINS:
            store.put_vehicle(vin, FLEET, 0)
        monitor_id = uuid7()
        store.create_monitor(
            MonitorRecord(monitor_id, "fleet", FLEET, monitor_definition(target), "Running", 0, 0)
        )
        return monitor_id
    finally:
        store.close()


def worker_config(  # noqa: PLR0917
    work: Path, name: str, store: str, broker: Mosquitto, ca: Path, n: int
) -> Path:
    config = work / f"{name}.toml"
    config.write_text(
        f"[store]\n{store}\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "bench-{name}"\n'
        f'share_group = ""\nshard_count = {n}\n'
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{ca}"\n'
        + ALLOW_LOOPBACK
        + "[dispatcher]\nin_order = true\n"
    )
    return config


def start_workers(work: Path, name: str, config: Path, n: int) -> list[object]:
    log_path = work / f"{name}.log"
    procs = []
    with log_path.open("ab") as log:
        for index in range(n):
            argv = [sys.executable, "-m", "backend", "run", "-c", str(config),
                    "--role", "ingest", "--role", "dispatcher"]  # fmt: skip
            if n > 1:
                argv += ["--shard", str(index)]
            procs.append(spawn(argv, cwd=ROOT, stdout=log, stderr=log))
    deadline = time.monotonic() + 30
    while log_path.read_text().count("ingest subscribed") < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError(f"workers did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return procs


def arrivals_of(receiver: ReceiverProcess, target: str, count: int, seen: list[object]) -> None:
    """Gather arrivals for ``target`` into ``seen`` until there are ``count`` (40 s at most)."""
    deadline = time.monotonic() + 40
    while len(seen) < count:
        seen += [a for a in receiver.arrivals() if a.target == target]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {count} deliveries to {target}")
        time.sleep(0.02)


def measure(  # noqa: PLR0917
    name: str, n: int, store_line: str, monitor_id: str, target: str,
    work: Path, broker: Mosquitto, receiver: ReceiverProcess, args: argparse.Namespace,
    server_pid: int | None, *, paced: bool,
) -> dict[str, float]:  # fmt: skip
    config = worker_config(work, name, store_line, broker, receiver.ca_file, n)
    procs = start_workers(work, name, config, n)
    client = publisher(broker, name)
    topics = Topics()
    figures: dict[str, float] = {}
    try:
        with stage(f"{name}: burst of {args.events}", 60):
            cpu = sum(cpu_seconds(p.pid) for p in procs)  # type: ignore[attr-defined]
            pg_cpu = tree_cpu(server_pid) if server_pid else 0.0
            bodies = [(topics.events(VINS[i % len(VINS)]), payload(monitor_id, i))
                      for i in range(args.events)]  # fmt: skip
            start = time.time()
            for info in [client.publish(t, b, qos=1) for t, b in bodies]:
                info.wait_for_publish(60)
            seen: list[object] = []
            arrivals_of(receiver, target, args.events, seen)
            last = max(a.at for a in seen)  # type: ignore[attr-defined]
            figures[f"scaleout_{name}_deliveries_per_s"] = args.events / (last - start)
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu  # type: ignore[attr-defined]
            figures[f"scaleout_{name}_cpu_ms_per_delivery"] = cpu / args.events * 1000
            if server_pid:
                pg = tree_cpu(server_pid) - pg_cpu  # connections that ended are not counted
                figures[f"scaleout_{name}_pg_cpu_ms_per_delivery"] = pg / args.events * 1000
        if not paced:
            return figures
        with stage(f"{name}: paced at {args.rate}/s", 60):
            count = int(args.rate * args.seconds)
            sent: dict[str, float] = {}
            for i in range(count):
                due = time.monotonic() + 1 / args.rate
                body = payload(monitor_id, i)
                sent_at = time.time()
                client.publish(topics.events(VINS[i % len(VINS)]), body, qos=1)
                sent[body.decode()] = sent_at
                time.sleep(max(0.0, due - time.monotonic()))
            seen = []
            arrivals_of(receiver, target, count, seen)
            latencies = [
                (a.at - d) * 1000  # type: ignore[attr-defined]
                for a in seen
                for d in a.event_dates()  # type: ignore[attr-defined]
            ]
            figures[f"scaleout_{name}_latency_ms_p50"] = percentile(latencies, 0.5)
            figures[f"scaleout_{name}_latency_ms_p99"] = percentile(latencies, 0.99)
    except TimeoutError:
        print((work / f"{name}.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_network_loop(client)
        client.disconnect()
        for proc in procs:
            stop(proc, 20)  # type: ignore[arg-type]
    return figures


def prepare(
    work: Path, server: PostgresServer, receiver: ReceiverProcess
) -> dict[str, tuple[str, str, str, int | None]]:
    """Per configuration: its [store] lines, its monitor, its receiver path, PostgreSQL's PID."""
    setups = {}
    for name, _ in CONFIGS:
        target = f"/{name}"
        if name.startswith("sqlite"):
            path = work / f"{name}.db"
            store_line = f'path = "{path}"'
            monitor_id = provision(SqliteStore(path), receiver.url + target)
            server_pid = None
        else:
            url = server.database()
            store_line = f'url = "{url}"\npool_size = 3'
            monitor_id = provision(PostgresStore(url, pool_size=1), receiver.url + target)
            server_pid = server.process.pid if server.process else None
        setups[name] = (store_line, monitor_id, target, server_pid)
    return setups


def main() -> int:
    guard("bench_scaleout")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=pick(3000, 60))
    parser.add_argument("--rate", type=float, default=pick(100.0, 20.0))
    parser.add_argument("--seconds", type=float, default=pick(3.0, 1.0))
    parser.add_argument("--rounds", type=int, default=pick(3, 1))
    args = parser.parse_args()
    print(f"# bench_scaleout on {machine()}; load average {os.getloadavg()[0]:.1f}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker").start()
        assert broker.process is not None
        adopt(broker.process)
        receiver = ReceiverProcess(work).start()
        with stage("postgresql start", 60):
            server = PostgresServer(durable=True)
            try:
                server.start()
            finally:
                if server.process is not None:
                    adopt(server.process)
        try:
            setups = prepare(work, server, receiver)
            # Rounds interleave the configurations, so a burst of load from other jobs on the
            # machine hits them alike; each figure is the median of its rounds.
            runs: dict[str, list[float]] = defaultdict(list)
            for round_number in range(args.rounds):
                for name, n in CONFIGS:
                    store_line, monitor_id, target, server_pid = setups[name]
                    got = measure(name, n, store_line, monitor_id, target, work, broker,
                                  receiver, args, server_pid, paced=round_number == 0)  # fmt: skip
                    for key, value in got.items():
                        runs[key].append(value)
                    rate = got[f"scaleout_{name}_deliveries_per_s"]
                    print(f"round {round_number + 1} {name}: {rate:,.0f} deliveries/s", flush=True)
            figures = {key: statistics.median(values) for key, values in runs.items()}
            for name, _ in CONFIGS:
                print(
                    f"{name}: median {figures[f'scaleout_{name}_deliveries_per_s']:,.0f}"
                    f" deliveries/s of {args.rounds} rounds,"
                    f" latency p50 {figures[f'scaleout_{name}_latency_ms_p50']:.1f} ms"
                    f" p99 {figures[f'scaleout_{name}_latency_ms_p99']:.1f} ms at {args.rate:g}/s,"
                    f" workers' CPU {figures[f'scaleout_{name}_cpu_ms_per_delivery']:.2f}"
                    " ms/delivery",
                    flush=True,
                )
        finally:
            server.stop()
            receiver.stop()
            broker.stop()
    write_results("scaleout", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
