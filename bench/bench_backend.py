"""Backend throughput and latency: MQTT events -> durable SQLite store -> signed HTTPS webhooks.

Runs a real mosquitto, an HTTPS receiver (trustme CA) and ``edgemon-backend run --role ingest
--role dispatcher`` as a separate process. Prints:

- baselines: raw HTTPS POSTs/s from one sender (builtin ``backend.http1`` and httpx) to the same
  receiver, same concurrency, nothing else;
- sustained deliveries/s when events are published as fast as possible (each event = one
  webhook, store durable with synchronous=FULL), with the httpx sender and with the builtin one,
  in one and in two backend processes, and the ratio against the baseline of that sender;
- events/s with batchNotify;
- latency from publish to the webhook's arrival (p50/p99) at a paced load of half that rate
  (this includes MQTT; the backend's own ingest->delivery histogram is in /metrics).

Usage: .venv/bin/python bench/bench_backend.py [--events 4000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.model import Event, EventValue  # noqa: E402
from agent.wire import Topics, event_to_json, uuid7  # noqa: E402
from backend.egress import LOOPBACK_ALLOWED  # noqa: E402
from backend.http1 import Http1Sender  # noqa: E402
from backend.records import MonitorRecord  # noqa: E402
from backend.store import SqliteStore  # noqa: E402
from backend.webhooks import HttpxSender, WebhookRequest  # noqa: E402
from tests.backend.backend_receiver import CertAuthority, Received, Receiver, Reply  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef012").decode()
FLEET = "bench-fleet"
VINS = [f"VF3BENCH{i:09d}" for i in range(20)]


class ReceiverProcess:
    """The HTTPS receiver in its own process (sharing a GIL with the sender would measure the
    GIL, not the sender); every request becomes one line ``at<TAB>target<TAB>body`` in a file."""

    def __init__(self, work: Path) -> None:
        self.log = work / "arrivals.tsv"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver", str(work)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"https://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines() if line.split("\t", 2)[1].startswith(prefix))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def serve_receiver(work: Path) -> int:
    ca = CertAuthority.create(work)  # same directory: the parent loads the same CA file
    out = (work / "arrivals.tsv").open("a", buffering=1)

    def respond(request: Received) -> Reply:
        out.write(f"{request.at}\t{request.target}\t{request.body.decode()}\n")
        return Reply(200)

    receiver = Receiver(ca.server_context(), respond=respond).start()
    print(receiver.port, flush=True)
    signal.sigwait([signal.SIGTERM])
    receiver.stop()
    return 0


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


async def baseline(url: str, ca_file: Path, count: int, concurrency: int, client: str) -> float:
    """Raw HTTPS POSTs/s from one sender, nothing else: the ceiling of that HTTP client."""
    body = b'{"monitorId":"m","attributes":[],"events":[]}'
    gate = asyncio.Semaphore(concurrency)
    context = ssl.create_default_context(cafile=str(ca_file))
    kind = Http1Sender if client == "builtin" else HttpxSender
    sender = kind(verify=context, policy=LOOPBACK_ALLOWED)
    request = WebhookRequest(url + "/base", (), body)

    async def one() -> None:
        async with gate:
            answer = await sender.send(request)
            assert answer.status == 200

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    elapsed = time.perf_counter() - start
    await sender.close()
    return count / elapsed


def monitor(target: str, batch: int | None) -> dict[str, object]:
    subscribe: dict[str, object] = {
        "retryPolicy": {"policy": "None"},
        "callback": {"webhook": {"target": target, "name": "bench", "attributes": [
            {"type": "Header", "key": "X-Monitor", "value": "$monitorID"}]}},
    }  # fmt: skip
    if batch:
        subscribe["batchNotify"] = {"size": batch, "timeWindow": 5}
    return {
        "label": "bench",
        "subscribeParam": subscribe,
        "triggerParam": {
            "triggers": [{"name": "hot", "data": {"data": "vehicle.engines.thermic.oil.temp",
                                                 "op": "greaterThan", "value": ["130"]}}],
            "boolExp": "hot",
        },
    }  # fmt: skip


def event(monitor_id: str, i: int) -> bytes:
    return event_to_json(
        Event(
            event_id=uuid7(),
            seq=i,
            vin=VINS[i % len(VINS)],
            fleet_id=FLEET,
            monitor_id=monitor_id,
            event_date=datetime.fromtimestamp(time.time(), tz=UTC),  # = publish time
            refresh=False,
            values=(EventValue("vehicle.engines.thermic.oil.temp", str(131 + i % 10)),),
        )
    )


def latencies(lines: list[str], prefix: str) -> list[float]:
    """Publish -> arrival of every event delivered under ``prefix`` (eventDate = publish time)."""
    out = []
    for line in lines:
        at, target, body = line.split("\t", 2)
        if target.startswith(prefix):
            for item in json.loads(body)["events"]:
                sent = datetime.fromisoformat(item["eventDate"].replace("Z", "+00:00"))
                out.append(float(at) - sent.timestamp())
    return out


def wait_events(receiver: ReceiverProcess, prefix: str, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(latencies(receiver.lines(), prefix)) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"deliveries under {prefix} did not complete")
        time.sleep(0.1)


def start_backend(
    work: Path, broker: Mosquitto, ca_file: Path, conc: int, *, name: str, client: str
) -> subprocess.Popen[bytes]:
    config = work / f"{name}.toml"
    config.write_text(
        f'[store]\npath = "{work / "backend.db"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'client_id = "slot-{name.split("-")[1]}"\n'
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{ca_file}"\n'
        'allow_networks = ["127.0.0.0/8"]\n'  # the receiver is on loopback
        f'per_endpoint_concurrency = {conc}\nclient = "{client}"\n'
        "[dispatcher]\npoll_interval = 0.05\nclaim_batch = 500\n"
    )
    log_path = work / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "run", "-c", str(config), "--role", "ingest",
             "--role", "dispatcher"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while "ingest subscribed" not in log_path.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(log_path.read_text()[-2000:])
        time.sleep(0.05)
    return proc


def burst(client: mqtt.Client, monitor_id: str, count: int, first: int) -> float:
    """Publish ``count`` events as fast as the broker takes them; seconds it took."""
    topics = Topics()
    start = time.perf_counter()
    infos = [client.publish(topics.events(VINS[i % len(VINS)]), event(monitor_id, i), qos=1)
             for i in range(first, first + count)]  # fmt: skip
    for info in infos:
        info.wait_for_publish(120)
    return time.perf_counter() - start


def paced(client: mqtt.Client, monitor_id: str, rate: float, seconds: float, first: int) -> int:
    topics = Topics()
    total = int(rate * seconds)
    begin = time.perf_counter()
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        n = first + i
        client.publish(topics.events(VINS[n % len(VINS)]), event(monitor_id, n), qos=1)
    return total


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def stop_all(backends: list[subprocess.Popen[bytes]]) -> None:
    for backend in backends:
        backend.send_signal(signal.SIGTERM)
        try:
            backend.wait(20)
        except subprocess.TimeoutExpired:
            backend.kill()


def run(args: argparse.Namespace, work: Path, receiver: ReceiverProcess) -> dict[str, float]:
    """Runs every measurement; returns every figure."""
    ca_file = work / "test-ca.pem"
    broker = Mosquitto(work / "broker").start()
    store = SqliteStore(work / "backend.db")
    ids = {"/httpx": uuid7(), "/one": uuid7(), "/batch": uuid7()}
    for prefix, mid in ids.items():
        definition = monitor(receiver.url + prefix, args.batch if prefix == "/batch" else None)
        store.create_monitor(MonitorRecord(mid, "fleet", FLEET, definition, "Running", 0, 0))
    for vin in VINS:  # events are routed by the backend's record of each vehicle's fleet
        store.put_vehicle(vin, FLEET, 0)
    store.close()
    conc, n, out = args.concurrency, args.events, {}
    # The client id is per process slot, not per run: a stopped process keeps its persistent
    # session, and with it its share of the shared subscription, until a process with the
    # same id returns (or the session expires).
    backends = [start_backend(work, broker, ca_file, conc, name="httpx-1", client="httpx")]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()

    def sustained(prefix: str, first: int, expect: int) -> float:
        start = time.perf_counter()
        burst(client, ids[prefix], n, first)
        wait_events(receiver, prefix, expect, timeout=600)
        return n / (time.perf_counter() - start)

    try:
        out["base_httpx"] = asyncio.run(baseline(receiver.url, ca_file, 2000, conc, "httpx"))
        out["base"] = asyncio.run(baseline(receiver.url, ca_file, 4000, conc, "builtin"))
        out["httpx"] = sustained("/httpx", 0, n)
        stop_all(backends)
        backends = [start_backend(work, broker, ca_file, conc, name="builtin-1", client="builtin")]
        out["rate"] = sustained("/one", n, n)
        saturated = latencies(receiver.lines(), "/one")
        out["sat50"], out["sat99"] = pct(saturated, 0.5), pct(saturated, 0.99)
        out["batch_rate"] = sustained("/batch", 2 * n, n)
        out["batch_requests"] = receiver.count("/batch")
        backends.append(
            start_backend(work, broker, ca_file, conc, name="builtin-2", client="builtin")
        )
        out["two_rate"] = sustained("/one", 3 * n, 2 * n)

        before = len(receiver.lines())
        out["paced_rate"] = max(20.0, round(out["rate"] / 2))
        total = paced(client, ids["/one"], out["paced_rate"], args.paced_seconds, 4 * n)
        wait_events(receiver, "/one", 2 * n + total, timeout=300)
        calm = latencies(receiver.lines()[before:], "/one")
        out["calm50"], out["calm99"] = pct(calm, 0.5), pct(calm, 0.99)
        out["calm_mean"] = statistics.fmean(calm) * 1000
    finally:
        client.loop_stop()
        client.disconnect()
        stop_all(backends)
        broker.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50, help="batchNotify size of run C")
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--serve-receiver", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        return serve_receiver(args.serve_receiver)
    work = Path(tempfile.mkdtemp(prefix="bench-backend-"))
    receiver = ReceiverProcess(work)
    try:
        r = run(args, work, receiver)
    finally:
        receiver.stop()
    base, hx = r["base"], r["base_httpx"]
    print(f"machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"A  baseline, raw HTTPS POSTs/s, concurrency {args.concurrency}: builtin sender "
          f"{base:,.0f}; httpx {hx:,.0f}")  # fmt: skip
    print(f"B0 httpx sender, one backend process, one event per webhook: {r['httpx']:,.0f} "
          f"deliveries/s (ratio to httpx baseline {r['httpx'] / hx:.2f})")  # fmt: skip
    print(f"B  builtin sender, one process, one event per webhook: {r['rate']:,.0f} "
          f"deliveries/s (ratio to A {r['rate'] / base:.2f}); publish->webhook with "
          f"{args.events} queued at once p50 {r['sat50']:,.0f} ms, "
          f"p99 {r['sat99']:,.0f} ms")  # fmt: skip
    print(f"C  batchNotify size {args.batch}: {r['batch_rate']:,.0f} events/s delivered in "
          f"{r['batch_requests']:.0f} webhooks")  # fmt: skip
    print(f"E  as B with two backend processes (shared subscription, leased deliveries): "
          f"{r['two_rate']:,.0f} deliveries/s (ratio to A {r['two_rate'] / base:.2f})")  # fmt: skip
    print(f"D  paced at {r['paced_rate']:,.0f} events/s for {args.paced_seconds:.0f}s (two "
          f"processes), publish->webhook p50 {r['calm50']:.1f} ms, p99 {r['calm99']:.1f} ms, "
          f"mean {r['calm_mean']:.1f} ms")  # fmt: skip
    best = max(r["rate"], r["two_rate"])
    print(f"target >= 1000 deliveries/s: {'met' if best >= 1000 else 'NOT met'} ({best:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
