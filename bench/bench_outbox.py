"""Agent outbox and publish latency.

1. Durable outbox writes/s: ``Outbox.append`` one event per transaction and in groups, against a
   plain SQLite insert loop (same journal mode and synchronous level) measured in the same run.
2. Outbox -> broker drain rate by in-flight window (``mqtt.max_inflight``), with a subscriber on
   the events topic (without one, mosquitto answers reason 16 and the agent keeps the events).
3. Frame -> MQTT subscriber latency (p50/p99) through the whole agent (virtual CAN bus, decoder,
   engine, outbox commit with fsync, MQTT QoS 1) against a real mosquitto, TCP_NODELAY on vs off.

Run: ``.venv/bin/python bench/bench_outbox.py`` (``make bench`` runs every bench;
``BENCH_SMOKE=1``: a few seconds, no figure meaningful).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import can  # noqa: E402
import cantools  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from harness import adopt, guard, percentile, pick, stage, write_results  # noqa: E402
from machine import machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.app import Agent  # noqa: E402
from agent.can.dbc import DEMO_DBC, DEMO_MAP  # noqa: E402
from agent.config import MqttConfig, load_config  # noqa: E402
from agent.model import Event, EventValue  # noqa: E402
from agent.paho_compat import stop_network_loop  # noqa: E402
from agent.uplink.mqtt import Acked, LinkEvent, MqttLink  # noqa: E402
from agent.uplink.outbox import Outbox  # noqa: E402
from agent.uplink.pump import EventPump  # noqa: E402
from agent.wire import Topics, event_to_json, uuid7  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

VIN = "VF3BENCH000000001"


def _event(seq: int) -> Event:
    return Event(
        event_id=uuid7(),
        seq=seq,
        vin=VIN,
        fleet_id="fleet-1",
        monitor_id="oil-hot",
        event_date=datetime(2026, 11, 23, tzinfo=UTC),
        refresh=False,
        values=(EventValue("vehicle.engines.thermic.oil.temp", "131", "129"),),
    )


def plain_sqlite(path: Path, count: int, synchronous: str) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE e (seq INTEGER PRIMARY KEY, id TEXT, payload BLOB)")
    payloads = [(i, uuid7(), event_to_json(_event(i))) for i in range(1, count + 1)]
    start = time.perf_counter()
    for row in payloads:
        db.execute("INSERT INTO e VALUES (?, ?, ?)", row)  # autocommit: one transaction each
    elapsed = time.perf_counter() - start
    db.close()
    return count / elapsed


def outbox_rate(path: Path, count: int, group: int, synchronous: str) -> float:
    outbox = Outbox(path, synchronous=synchronous, max_events=10 * count)
    batches = [[_event(outbox.next()) for _ in range(group)] for _ in range(count // group)]
    start = time.perf_counter()
    for batch in batches:
        outbox.append(batch, now=1.0)
    elapsed = time.perf_counter() - start
    outbox.close()
    return count / elapsed


def bench_writes(folder: Path) -> dict[str, float]:
    print("\n## durable outbox writes/s (WAL)")
    figures = {}
    for sync in ("FULL", "NORMAL"):
        n = pick(500, 100) if sync == "FULL" else pick(5000, 500)
        base = plain_sqlite(folder / f"plain-{sync}.db", n, sync)
        print(f"plain sqlite insert loop, synchronous={sync}: {base:9.0f} rows/s (baseline)")
        for group in (1, 10, 100):
            rate = outbox_rate(folder / f"ob-{sync}-{group}.db", n, group, sync.lower())
            print(
                f"Outbox.append, synchronous={sync}, {group:3d} event(s)/transaction:"
                f" {rate:9.0f} events/s  ({rate / base:5.2f}x baseline)"
            )
            if sync == "FULL":  # durable: survives a power cut
                key = "outbox_writes_per_s" + ("" if group == 1 else f"_group{group}")
                figures[key] = rate
        if sync == "FULL":
            figures["outbox_plain_sqlite_full_rows_per_s"] = base
    return figures


def drain_rate(broker: Mosquitto, folder: Path, window: int, count: int) -> float:
    """``count`` committed events published with ``window`` in flight, until every PUBACK has
    deleted its row. A subscriber must be there: an event the broker delivers to nobody (MQTT 5
    reason 16) stays in the outbox and is resent after a backoff, so the drain would not end."""
    subscriber = Subscriber(broker, Topics().events("+"))
    outbox = Outbox(folder / f"drain-{window}.db", synchronous="normal")
    outbox.append([_event(outbox.next()) for _ in range(count)], now=1.0)
    inbox: queue.SimpleQueue[LinkEvent] = queue.SimpleQueue()
    config = MqttConfig(host=broker.host, port=broker.port, max_inflight=window)
    link = MqttLink(config, f"drain-{window}", inbox.put)
    # The drain measures the link and the window, not the agent's pacing ([mqtt] max_publish_rate,
    # 50/s by default, which keeps a backlog under the backend's per-vehicle limit): lifted here.
    pump = EventPump(outbox, link, Topics(), window=window, max_rate=1e9, burst=count)
    link.start()
    start = 0.0
    while outbox.depth():
        acks: list[Acked] = []
        try:
            item = inbox.get(timeout=0.05)
            while True:
                if isinstance(item, Acked):
                    acks.append(item)
                else:
                    pump.handle(item)
                    start = start or time.perf_counter()
                item = inbox.get_nowait()
        except queue.Empty:
            pass
        pump.handle_acks(acks)
        pump.fill()
    elapsed = time.perf_counter() - start
    link.stop()
    outbox.close()
    subscriber.close()
    return count / elapsed


def bench_window(broker: Mosquitto, folder: Path) -> dict[str, float]:
    print("\n## outbox -> broker drain (QoS 1, PUBACK deletes), by in-flight window")
    base, rates = None, {}
    for window in (1, 10, 100, 1000):
        rate = drain_rate(broker, folder, window, pick(3000, 200))
        base = base or rate
        rates[window] = rate
        print(f"max_inflight={window:5d}: {rate:8.0f} events/s  ({rate / base:5.2f}x window 1)")
    return {"outbox_drain_events_per_s": rates[100]}  # the default max_inflight


class Subscriber:
    def __init__(self, broker: Mosquitto, topic: str) -> None:
        self.times: list[float] = []
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=0)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda *a: self.times.append(time.perf_counter())
        self.client.connect(broker.host, broker.port)
        sock = self.client.socket()
        if sock is not None:
            sock.setsockopt(6, 1, 1)  # TCP_NODELAY on the measuring side in both runs
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError(f"subscriber to {topic}: no SUBACK within 10 s")

    def close(self) -> None:
        stop_network_loop(self.client)
        self.client.disconnect()


def _agent_config(folder: Path, port: int, channel: str, nodelay: bool, sync: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "monitors.json").write_text(
        '[{"id":"oil","label":"oil","subscribeParam":{"callback":{"webhook":{"target":'
        '"https://example.com/h","name":"h"}}},"triggerParam":{"triggers":[{"name":"oil",'
        '"data":{"data":"vehicle.engines.thermic.oil.temp","op":"greaterThan","value":["120"]}}],'
        '"boolExp":"oil"}}]'
    )
    text = f"""
vin = "{VIN}"
state_dir = "{folder}"
monitors_file = "monitors.json"
[[can]]
name = "can0"
interface = "virtual"
channel = "{channel}"
dbc = ["{DEMO_DBC}"]
signal_map = "{DEMO_MAP}"
[mqtt]
port = {port}
tcp_nodelay = {"true" if nodelay else "false"}
[outbox]
synchronous = "{sync}"
"""
    (folder / "agent.toml").write_text(text)
    return folder / "agent.toml"


def latency_run(
    broker: Mosquitto, folder: Path, nodelay: bool, sync: str, events: int
) -> list[float]:
    channel = f"bench-{nodelay}-{sync}-{os.getpid()}"
    config = _agent_config(folder, broker.port, channel, nodelay, sync)
    agent = Agent(load_config(config, env={}))
    subscriber = Subscriber(broker, Topics().events(VIN))
    thread = threading.Thread(target=agent.run)
    thread.start()
    db = cantools.database.load_file(DEMO_DBC)
    message = db.get_message_by_name("EngineData")
    frames = {}
    for temp in (100, 140):
        values = {s.name: 0 for s in message.signals}
        values.update(OilTemp=temp, EngineRunning=1)
        frames[temp] = message.encode(values, strict=False)
    bus = can.Bus(interface="virtual", channel=channel)
    deadline = time.monotonic() + 20
    while not agent.link.connected:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"agent did not connect: {agent.link.last_error}")
        time.sleep(0.05)
    time.sleep(0.3)
    sent: list[float] = []
    for _ in range(events):
        bus.send(
            can.Message(arbitration_id=message.frame_id, data=frames[100], is_extended_id=False)
        )
        time.sleep(0.01)
        sent.append(time.perf_counter())
        bus.send(
            can.Message(arbitration_id=message.frame_id, data=frames[140], is_extended_id=False)
        )
        time.sleep(0.01)
    deadline = time.monotonic() + 10
    while len(subscriber.times) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.request_stop()
    thread.join(15)
    bus.shutdown()
    subscriber.close()
    got = subscriber.times
    return [(got[i] - sent[i]) * 1000 for i in range(min(len(got), len(sent)))]


_pct = percentile


def bench_latency(broker: Mosquitto, folder: Path) -> dict[str, float]:
    print("\n## frame -> MQTT subscriber latency (ms), whole agent, QoS 1, one frame per 10 ms")
    figures = {}
    for sync in ("full", "normal"):
        results = {}
        for nodelay in (False, True):
            lat = latency_run(
                broker, folder / f"lat-{nodelay}-{sync}", nodelay, sync, pick(250, 20)
            )
            results[nodelay] = lat
            print(
                f"outbox synchronous={sync:6s} TCP_NODELAY={'on ' if nodelay else 'off'}:"
                f" n={len(lat)} p50={_pct(lat, 0.5):6.2f} p99={_pct(lat, 0.99):6.2f}"
                f" max={max(lat):6.2f} mean={statistics.mean(lat):6.2f}"
            )
        off, on = results[False], results[True]
        print(
            f"  NODELAY off/on: p50 {_pct(off, 0.5) / _pct(on, 0.5):5.2f}x,"
            f" p99 {_pct(off, 0.99) / _pct(on, 0.99):5.2f}x"
        )
        if sync == "full":  # the agent's defaults: synchronous=full, TCP_NODELAY on
            figures["agent_publish_latency_ms_p50"] = _pct(on, 0.5)
            figures["agent_publish_latency_ms_p99"] = _pct(on, 0.99)
    return figures


def main() -> int:
    guard("bench_outbox")
    print(f"# bench_outbox on {machine()}")
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with stage("durable writes", 20):
            figures |= bench_writes(folder)
        broker = Mosquitto(folder / "broker").start()
        assert broker.process is not None
        adopt(broker.process)
        try:
            with stage("drain by window", 20):
                figures |= bench_window(broker, folder)
            with stage("frame -> subscriber latency", 40):
                figures |= bench_latency(broker, folder)
        finally:
            broker.stop()
    write_results("outbox", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
