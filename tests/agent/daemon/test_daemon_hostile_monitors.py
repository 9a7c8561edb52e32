"""Issue 12, finding 6 against a real `edgemon-agent run` and a real mosquitto: hostile monitors
retained on the vehicle's topics are rejected (the state topic says why), the agent keeps running
and firing its other monitors, and it starts again cleanly with those messages still retained."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_from_json
from tests.agent.daemon.conftest import VIN, Collector, agent_toml, oil_monitor, write_oil_log
from tests.agent.daemon.test_daemon_process import processes  # noqa: F401 - a fixture
from tests.agent.monitors.hostile import deep_parentheses, many_triggers, nested_json, zone_named
from tests.backend.conftest import publisher
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
HOSTILE: dict[str, tuple[bytes, str]] = {
    "triggers-24": (json.dumps(many_triggers(24)).encode(), "needs 1 to 10 triggers"),
    "triggers-22": (json.dumps(many_triggers(22)).encode(), "needs 1 to 10 triggers"),
    "parens": (json.dumps(deep_parentheses(5000)).encode(), "characters long"),
    "europe": (json.dumps(zone_named("Europe")).encode(), "unknown time zone 'Europe'"),
    "deep-json": (nested_json(50_000).encode(), "nests"),
    "surrogate": (b'{"label": "\\ud800", "triggerParam": {}}', "not valid Unicode"),
    "digits": (b'{"label": 1' + b"0" * 4000 + b"}", "too large"),
}


def _states(collector: Collector) -> dict[str, dict[str, object]]:
    """The last state of each monitor id seen so far."""
    out: dict[str, dict[str, object]] = {}
    for topic, payload, _ in list(collector.messages):
        if topic.endswith("/state") and payload:
            out[topic.split("/")[-2]] = json.loads(payload)
    return out


def _all_decided(collector: Collector, since: int) -> bool:
    seen = {
        t.split("/")[-2] for t, p, _ in list(collector.messages)[since:] if t.endswith("/state")
    }
    return seen >= {*HOSTILE, "good", "local"}


def _fired(collector: Collector, since: int) -> set[str]:
    events = [p for t, p, _ in list(collector.messages)[since:] if t.endswith("/events")]
    return {event_from_json(p).monitor_id for p in events}


@pytest.mark.timeout(240)
def test_hostile_retained_monitors_are_rejected_and_the_agent_keeps_going(
    tmp_path: Path,
    mosquitto: Mosquitto,
    collector_factory: Callable[..., Collector],
    processes: Callable[..., subprocess.Popen[bytes]],  # noqa: F811 - the fixture
) -> None:
    backend = publisher(mosquitto)
    for monitor_id, (payload, _) in HOSTILE.items():
        publish_retained(backend, TOPICS.vehicle_monitor(VIN, monitor_id), payload)
    good = json.dumps(oil_monitor("120")).encode()
    publish_retained(backend, TOPICS.vehicle_monitor(VIN, "good"), good)
    collector = collector_factory(
        mosquitto.host,
        mosquitto.port,
        [
            TOPICS.events(VIN),
            TOPICS.status(VIN),
            f"{TOPICS.prefix}/vehicles/{VIN}/monitors/+/state",
        ],
    )
    folder = tmp_path / "agent"
    log = write_oil_log(tmp_path / "oil.log", 400, step=0.05)  # fires every 0.1 s for 20 s
    replay = f'interface = "virtual"\nchannel = "h1"\nreplay = "{log}"'
    config = agent_toml(
        folder, mosquitto.port, can=replay, monitors=[oil_monitor("125", id="local")]
    )
    for run in range(2):  # the second start meets the same retained messages
        since = len(collector.messages)
        proc = processes(config)
        collector.wait_for(lambda c, since=since: _all_decided(c, since), timeout=60)
        collector.wait_for(lambda c, since=since: _fired(c, since) >= {"good", "local"}, 60)
        assert proc.poll() is None, f"the agent died (run {run})"
        states = _states(collector)
        for monitor_id, (_, reason) in HOSTILE.items():
            state = states[monitor_id]
            assert state["state"] == "rejected", (monitor_id, state)
            messages = [r["message"] for r in state["reasons"]]  # type: ignore[attr-defined]
            assert any(reason in m for m in messages), (monitor_id, messages)
        assert states["good"]["state"] == "applied" and states["local"]["state"] == "applied"
        statuses = [json.loads(p) for p in collector.payloads("/status") if p]
        assert any(s["online"] for s in statuses)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, f"the agent did not stop cleanly (run {run})"
    err = (folder / "agent-1.err").read_text() + (folder / "agent-1.log").read_text()
    assert "Traceback" not in err
    stop_network_loop(backend)
    backend.disconnect()


def publish_retained(client: mqtt.Client, topic: str, payload: bytes) -> None:
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
