"""Backend throughput with its default configuration: MQTT events -> durable SQLite store ->
signed HTTPS webhooks.

A real mosquitto, an HTTPS receiver in its own process (trustme CA) and ``edgemon-backend run``
(ingest + dispatcher, one process, the configuration a user gets: default sender, concurrency,
poll interval, store ``synchronous=FULL``). Events are published (QoS 1, 20 VINs) as fast as
the broker takes them:

- ``backend_deliveries_per_s``: one event per webhook; events / (first publish -> last arrival);
- ``backend_batched_events_per_s``: the same with ``batchNotify`` size 50;
- ``backend_rss_mb``: the backend's VmRSS after both runs.

``BENCH_PROFILE=DIR``: the backend runs under cProfile, its profile written to DIR at the end.
Usage: .venv/bin/python bench/bench_backend.py [--events N] [--batched-events N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from deliveries import (  # noqa: E402
    ReceiverProcess,
    backend_config,
    create_monitors,
    start_backend,
)
from harness import adopt, cpu_seconds, guard, pick, rss_mb, stage, stop, write_results  # noqa: E402
from machine import machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.model import Event, EventValue  # noqa: E402
from agent.paho_compat import stop_network_loop  # noqa: E402
from agent.wire import Topics, event_to_json, uuid7  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

FLEET = "bench-fleet"
VINS = [f"VF3BENCH{i:09d}" for i in range(20)]


def event(monitor_id: str, i: int) -> bytes:
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


def publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.max_inflight_messages_set(1000)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def burst(client: mqtt.Client, monitor_id: str, count: int) -> None:
    """Publish ``count`` events as fast as the broker takes them (payloads built beforehand)."""
    topics = Topics()
    payloads = [(topics.events(VINS[i % len(VINS)]), event(monitor_id, i)) for i in range(count)]
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(60)


def delivered(receiver: ReceiverProcess, target: str, events: int, timeout: float) -> float:
    """Wait until ``events`` events arrived under ``target``; the last arrival's time."""
    deadline = time.monotonic() + timeout
    count, last = 0, 0.0
    while count < events:
        for arrival in receiver.arrivals():
            if arrival.target.startswith(target):
                count += len(arrival.event_dates())
                last = max(last, arrival.at)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} of {events} events delivered to {target} in {timeout} s")
        time.sleep(0.05)
    return last


def sustained(
    client: mqtt.Client, receiver: ReceiverProcess, monitor_id: str, target: str, count: int
) -> float:
    start = time.time()
    burst(client, monitor_id, count)
    last = delivered(receiver, target, count, timeout=40)
    return count / (last - start)


def measure(work: Path, args: argparse.Namespace, extra_config: str = "") -> dict[str, float]:
    """``extra_config``: TOML lines added to ``[webhooks]`` (``bench_senders`` sets ``client``).
    ``args.batched_events`` 0 skips the batched run."""
    broker = Mosquitto(work / "broker").start()
    assert broker.process is not None
    adopt(broker.process)
    receiver = ReceiverProcess(work).start()
    one, batched = receiver.url + "/one", receiver.url + "/batch"
    ids = create_monitors(work / "backend.db", FLEET, VINS, {one: None, batched: 50})
    backend = start_backend(work, backend_config(work, broker, receiver.ca_file, extra_config))
    client = publisher(broker)
    figures: dict[str, float] = {}
    try:
        with stage("one event per webhook", 45):
            cpu = cpu_seconds(backend.pid)
            figures["backend_deliveries_per_s"] = sustained(
                client, receiver, ids[one], "/one", args.events
            )
            cpu = cpu_seconds(backend.pid) - cpu
            figures["backend_cpu_ms_per_delivery"] = cpu / args.events * 1000
        if args.batched_events:
            with stage("batchNotify 50", 30):
                figures["backend_batched_events_per_s"] = sustained(
                    client, receiver, ids[batched], "/batch", args.batched_events
                )
        figures["backend_rss_mb"] = rss_mb(backend.pid)
    finally:
        stop_network_loop(client)
        client.disconnect()
        stop(backend, 30)
        receiver.stop()
        broker.stop()
    return figures


def main() -> int:
    guard("bench_backend")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=pick(4000, 100))
    parser.add_argument("--batched-events", type=int, default=pick(10000, 500))
    args = parser.parse_args()
    print(f"# bench_backend on {machine()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        figures = measure(Path(tmp), args)
    print(f"one event per webhook: {figures['backend_deliveries_per_s']:,.0f} deliveries/s "
          f"({args.events} events); batchNotify 50: "
          f"{figures['backend_batched_events_per_s']:,.0f} events/s ({args.batched_events} "
          f"events); backend RSS after both: {figures['backend_rss_mb']:.1f} MiB; backend CPU "
          f"per delivery {figures['backend_cpu_ms_per_delivery']:.2f} ms")  # fmt: skip
    write_results("backend", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
