"""End-to-end latency: a CAN frame handed to the agent -> the webhook received over HTTPS.

The chain, every part with its default configuration: the agent (in this process: a python-can
``virtual`` bus the benchmark writes to, decoder, monitor engine, outbox with
``synchronous=full``, MQTT QoS 1 with TCP_NODELAY) -> a real mosquitto -> ``edgemon-backend run``
(its own process) -> an HTTPS receiver (its own process, trustme CA).

Load: a steady 200 firings/s for 30 s (after a 1 s warm-up that is not counted): every 5 ms a
frame with the oil above the threshold (recorded send time), 2.5 ms later one below it.
Each webhook's ``eventDate`` (the frame's bus timestamp, ms) is matched to the nearest send time
(sends are 5 ms apart); latency = arrival at the receiver - send. A QoS 0 subscriber on the
events topic splits it: frame -> MQTT (agent) and MQTT -> webhook (backend).

Usage: .venv/bin/python bench/bench_e2e.py [--rate 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import can  # noqa: E402
import cantools  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from deliveries import (  # noqa: E402
    ReceiverProcess,
    backend_config,
    create_monitors,
    monitor_definition,
    start_backend,
)
from harness import (  # noqa: E402
    adopt,
    cpu_seconds,
    guard,
    percentile,
    pick,
    stage,
    stop,
    write_results,
)
from machine import machine  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from agent.app import Agent  # noqa: E402
from agent.can.dbc import DEMO_DBC, DEMO_MAP  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.paho_compat import stop_network_loop  # noqa: E402
from agent.wire import Topics  # noqa: E402
from tests.support.mosquitto import Mosquitto  # noqa: E402

VIN = "VF3BENCHE2E000001"
FLEET = "bench-fleet"
MATCH = 0.002  # an eventDate (ms) is within 1 ms of its send time; sends are 5 ms apart


class Tap:
    """QoS 0 subscriber to the vehicle's events: (arrival, eventDate) of each."""

    def __init__(self, broker: Mosquitto) -> None:
        self.seen: list[tuple[float, bytes]] = []
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(Topics().events(VIN), qos=0)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.on_message = lambda _c, _u, m: self.seen.append((time.time(), m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("events subscriber: no SUBACK within 10 s")

    def dates(self) -> list[tuple[float, float]]:
        return [(at, _date(json.loads(payload)["eventDate"])) for at, payload in self.seen]

    def close(self) -> None:
        stop_network_loop(self.client)
        self.client.disconnect()


# One simulated vehicle carries the load of a fleet here (200 firings/s), four times the pace a
# stock agent publishes at and twice what the backend accepts from one vehicle: both limits are
# lifted for it, and only them; everything else is the default configuration.
ONE_VEHICLE_AS_A_FLEET = {
    "agent": "max_publish_rate = 5000.0\npublish_burst = 5000\n",
    "backend": "[limits]\nvehicle_rate = 5000.0\nvehicle_burst = 20000\n",
}


def _date(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def agent_config(work: Path, port: int, monitor_id: str, target: str) -> Path:
    definition: dict[str, Any] = {"id": monitor_id, **monitor_definition(target)}
    (work / "monitors.json").write_text(json.dumps([definition]))
    config = work / "agent.toml"
    config.write_text(
        f'vin = "{VIN}"\nfleet_id = "{FLEET}"\nstate_dir = "{work / "agent"}"\n'
        f'monitors_file = "monitors.json"\n'
        f'[[can]]\nname = "can0"\ninterface = "virtual"\nchannel = "bench-e2e-{os.getpid()}"\n'
        f'dbc = ["{DEMO_DBC}"]\nsignal_map = "{DEMO_MAP}"\n'
        f"[mqtt]\nport = {port}\n" + ONE_VEHICLE_AS_A_FLEET["agent"]
    )
    return config


class Drive:
    """Frames handed to the agent on the virtual bus, at a steady rate of firings."""

    def __init__(self, channel: str) -> None:
        db = cantools.database.load_file(str(DEMO_DBC))
        message = db.get_message_by_name("EngineData")
        self.frames = {}
        for temp in (100, 140):
            values = {s.name: 0 for s in message.signals}
            values.update(OilTemp=temp, EngineRunning=1, EngineSpeed=1500)
            data = message.encode(values, strict=False)
            self.frames[temp] = can.Message(arbitration_id=message.frame_id, data=data,
                                            is_extended_id=False)  # fmt: skip
        self.bus = can.Bus(interface="virtual", channel=channel)
        self.sent: list[float] = []

    def run(self, rate: float, seconds: float) -> list[float]:
        """One firing every 1/rate s; returns the send times of the firing frames."""
        period = 1.0 / rate
        sent: list[float] = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            for temp, offset in ((140, 0.0), (100, period / 2)):
                delay = begin + i * period + offset - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if temp == 140:
                    sent.append(time.time())
                self.bus.send(self.frames[temp])
        return sent

    def close(self) -> None:
        self.bus.shutdown()


def match(sent: list[float], arrivals: list[tuple[float, float]]) -> tuple[list[float], int]:
    """Latencies (ms) of arrivals (arrival, eventDate) whose date is a counted send."""
    out, unmatched = [], 0
    for at, date in arrivals:
        i = bisect.bisect_left(sent, date - MATCH)
        if i < len(sent) and abs(sent[i] - date) <= MATCH:
            out.append((at - sent[i]) * 1000)
        else:
            unmatched += 1
    return out, unmatched


def webhook_arrivals(
    receiver: ReceiverProcess, want: int, timeout: float
) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        for arrival in receiver.arrivals():
            found += [(arrival.at, date) for date in arrival.event_dates()]
        time.sleep(0.1)
    return found


def run_chain(work: Path, rate: float, seconds: float) -> dict[str, float]:
    broker = Mosquitto(work / "broker").start()
    assert broker.process is not None
    adopt(broker.process)
    receiver = ReceiverProcess(work).start()
    target = receiver.url + "/e2e"
    monitor_id = create_monitors(work / "backend.db", FLEET, [VIN], {target: None})[target]
    extra = ONE_VEHICLE_AS_A_FLEET["backend"]
    backend = start_backend(work, backend_config(work, broker, receiver.ca_file, extra))
    config = agent_config(work, broker.port, monitor_id, target)
    agent = Agent(load_config(config, env={}))
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    tap = Tap(broker)
    drive = Drive(f"bench-e2e-{os.getpid()}")
    try:
        with stage("agent connects", 20):
            thread.start()
            while not agent.link.connected:
                if not thread.is_alive():
                    raise RuntimeError(f"the agent stopped: {agent.link.last_error}")
                time.sleep(0.05)
        with stage("warm-up", 20):
            warm = drive.run(rate, 1.0)
            webhook_arrivals(receiver, len(warm), 15)
        tap.seen.clear()
        cpu = [cpu_seconds(backend.pid), time.process_time()]
        with stage(f"{rate:.0f} firings/s for {seconds:.0f} s", seconds + 30):
            sent = drive.run(rate, seconds)
            arrivals = webhook_arrivals(receiver, len(sent), 25)
        out = figures(sent, arrivals, tap.dates(), rate, seconds)
        # CPU per firing: the backend process, and this one (the agent and the frame sender)
        out["e2e_backend_cpu_ms_per_event"] = (cpu_seconds(backend.pid) - cpu[0]) / len(sent) * 1e3
        out["e2e_agent_cpu_ms_per_event"] = (time.process_time() - cpu[1]) / len(sent) * 1e3
        print(f"  CPU per firing: backend {out['e2e_backend_cpu_ms_per_event']:.2f} ms, "
              f"agent + sender {out['e2e_agent_cpu_ms_per_event']:.2f} ms")  # fmt: skip
        return out
    finally:
        agent.request_stop()
        thread.join(10)
        drive.close()
        tap.close()
        stop(backend, 30)
        receiver.stop()
        broker.stop()


def figures(
    sent: list[float],
    arrivals: list[tuple[float, float]],
    mqtt_seen: list[tuple[float, float]],
    rate: float,
    seconds: float,
) -> dict[str, float]:
    total, mqtt_hop = match(sent, arrivals)[0], match(sent, mqtt_seen)[0]
    if len(total) < 0.99 * len(sent):
        raise RuntimeError(f"only {len(total)} of {len(sent)} firings matched a webhook")
    achieved = len(sent) / (sent[-1] - sent[0]) if len(sent) > 1 else 0.0
    print(f"{len(sent)} firings sent at {achieved:.0f}/s (asked {rate:.0f}/s for {seconds:.0f} s); "
          f"{len(total)} webhooks matched, {len(mqtt_hop)} MQTT messages matched")  # fmt: skip
    out = {
        "e2e_latency_ms_p50": percentile(total, 0.5),
        "e2e_latency_ms_p99": percentile(total, 0.99),
        "e2e_latency_ms_max": max(total),
        "e2e_rate_per_s": achieved,
    }
    if mqtt_hop:
        out["e2e_frame_to_mqtt_ms_p50"] = percentile(mqtt_hop, 0.5)
        out["e2e_frame_to_mqtt_ms_p99"] = percentile(mqtt_hop, 0.99)
    for key, value in out.items():
        print(f"  {key:28} {value:10.2f}")
    return out


def main() -> int:
    guard("bench_e2e")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=pick(200.0, 50.0))
    parser.add_argument("--seconds", type=float, default=pick(30.0, 2.0))
    args = parser.parse_args()
    print(f"# bench_e2e on {machine()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        results = run_chain(Path(tmp), args.rate, args.seconds)
    write_results("e2e", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
