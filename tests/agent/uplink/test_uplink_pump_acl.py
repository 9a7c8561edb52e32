"""A broker ACL that lets a vehicle publish only under its own VIN: refused events stay queued."""

from __future__ import annotations

import os
import queue
import subprocess
import time
from pathlib import Path

from agent.config import MqttConfig
from agent.uplink.mqtt import Acked, LinkEvent, MqttLink
from agent.uplink.outbox import Outbox
from agent.uplink.pump import EventPump
from agent.wire import Topics
from tests.agent.daemon.conftest import VIN, make_event
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
ANSWERS = ("acked", "broker_rejected", "no_subscribers")


def _acl_broker(folder: Path) -> Mosquitto:
    folder.mkdir(parents=True)
    passwords = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), VIN, "pw"], check=True)
    (folder / "acl").write_text(
        "pattern write edgemon/v1/vehicles/%u/#\npattern read edgemon/v1/vehicles/%u/monitors/+\n"
    )
    conf = [
        "allow_anonymous false",
        f"password_file {passwords}",
        f"acl_file {folder / 'acl'}",
        "user root" if os.geteuid() == 0 else "",
    ]
    return Mosquitto(folder / "broker", extra_conf="\n".join(conf)).start()


def _pump(outbox: Outbox, broker: Mosquitto, answers: int) -> EventPump:
    """Run the pump until the broker has answered ``answers`` events (PUBACK ok, refused, or
    accepted with no subscriber: this test's broker has none)."""
    inbox: queue.Queue[LinkEvent] = queue.Queue()
    config = MqttConfig(host=broker.host, port=broker.port, username=VIN, password="pw")
    link = MqttLink(config, f"acl-{time.monotonic()}", inbox.put)
    pump = EventPump(outbox, link, TOPICS, window=10)
    link.start()
    deadline = time.monotonic() + 20
    try:
        while sum(pump.counters[k] for k in ANSWERS) < answers:
            assert time.monotonic() < deadline, "the broker did not answer"
            try:
                item = inbox.get(timeout=0.05)
                if isinstance(item, Acked):
                    pump.handle_acks([item])
                else:
                    pump.handle(item)
            except queue.Empty:
                pass
            pump.fill()
    finally:
        link.stop()
    return pump


def test_events_under_another_vin_are_refused_and_kept(tmp_path: Path) -> None:
    broker = _acl_broker(tmp_path / "acl")
    try:
        outbox = Outbox(tmp_path / "o.sqlite")
        outbox.append([make_event(outbox.next(), vin="OTHERVIN000000001")])
        outbox.append([make_event(outbox.next())])
        pump = _pump(outbox, broker, answers=2)
        assert pump.counters["broker_rejected"] == 1
        # Its own event passed the ACL; with nobody subscribed it is kept for a resend too.
        assert pump.counters["acked"] + pump.counters["no_subscribers"] == 1
        assert [p.vin for p in outbox.pending(10)] == ["OTHERVIN000000001", VIN]
    finally:
        broker.stop()
