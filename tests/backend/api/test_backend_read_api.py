"""Reading what happened (issue 18), on one backend shared by the module: real mosquitto, an
agent's events and status over MQTT, webhooks delivered to a real HTTPS receiver. Events by
vehicle, fleet, monitor and time range; each vehicle's last known state; deliveries with their
attempts; every ``_links`` entry resolves; delivery and unmatched-monitor logs; and ``/docs``
rendered by a real headless Chromium."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from agent.model import EventValue, Extension
from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json, format_date, status_to_json
from backend.app import Backend
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import (
    READ_ONLY,
    TOKEN,
    VIN,
    BackendThread,
    load,
    make_event,
    monitor_definition,
    publish,
    publisher,
)
from tests.support.mosquitto import Mosquitto, free_port, wait_for_port

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": f"Bearer {READ_ONLY}"}  # fleet-1 only
VIN2 = "VF3TEST0000000002"  # fleet-2
OIL = "vehicle.engines.thermic.oil.temp"
SPEED = "vehicle.kinetic.speed"
TOPICS = Topics()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class World:
    api: str
    m1: str  # VIN's monitor (fleet-1)
    m2: str  # fleet-2's monitor
    events: list[str]  # VIN's three event ids, oldest first
    at: list[float]  # their eventDates
    logged: Lines


def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def _get(world: World, path: str, headers: dict[str, str] = ADMIN, **query: str) -> Any:
    answer = httpx.get(world.api + path, headers=headers, params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _publish_drive(broker: Mosquitto, m1: str, m2: str) -> tuple[list[str], list[float]]:
    now = time.time()
    at = [now - 300, now - 200, now - 100]
    first = make_event(m1, at=at[0], value="131")
    second = dataclasses.replace(
        make_event(m1, at=at[1]),
        values=(EventValue(SPEED, "54", "40"),),
        extensions=(Extension("vehicle.position", {"latitude": 48.9, "longitude": 2.4}),),
    )
    third = dataclasses.replace(make_event(m1, at=at[2], value="140"), extensions=())
    other = dataclasses.replace(make_event(m2, vin=VIN2, at=now - 150), fleet_id="fleet-2")
    agent = publisher(broker)
    try:
        for event in (first, second, third, other):
            publish(agent, TOPICS.events(event.vin), event_to_json(event))
        for n in range(3):  # a local monitor of the vehicle: unknown to the backend
            publish(agent, TOPICS.events(VIN), event_to_json(make_event("local-oil", at=now - n)))
        status = status_to_json(
            vin=VIN, online=True, at=datetime.now(tz=UTC), version="9.9.9", outbox_depth=2
        )
        agent.publish(TOPICS.status(VIN), status, qos=1, retain=True).wait_for_publish(10)
    finally:
        stop_network_loop(agent)
        agent.disconnect()
    return [first.event_id, second.event_id, third.event_id], at


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("read-api")
    logged = Lines()
    backend_log = logging.getLogger("backend")
    old_level = backend_log.level
    backend_log.setLevel(logging.INFO)
    backend_log.addHandler(logged)
    broker = Mosquitto(folder / "broker").start()
    receiver = Receiver(test_ca.server_context()).start()
    port = free_port()
    config = load(
        folder,
        api={"port": port},
        fleets={"fleet-1": {"vehicles": [VIN]}, "fleet-2": {"vehicles": [VIN2]}},
        mqtt={"host": broker.host, "port": broker.port, "client_id": "read-api"},
        webhooks={"ca_bundle": str(test_ca.ca_file)},
    )
    thread = BackendThread(Backend(config, status_sync_interval=0.2)).start()
    try:
        api = f"http://127.0.0.1:{port}"
        wait_for_port("127.0.0.1", port)
        mids = []
        for owner in (f"/vehicles/{VIN}", "/fleets/fleet-2"):
            body = monitor_definition(receiver.url + "/hook")
            created = httpx.post(f"{api}{owner}/monitors", json=body, headers=ADMIN)
            assert created.status_code == 202, created.text
            mids.append(created.json()["monitorId"])
        events, at = _publish_drive(broker, *mids)
        receiver.wait_for(4)
        world = World(api, mids[0], mids[1], events, at, logged)
        _until(
            lambda: (
                _get(world, f"/monitors/{mids[0]}/deliveries")["total"] == 3
                and all(
                    d["attempts"]
                    for d in _get(world, f"/monitors/{mids[0]}/deliveries")["_embedded"][
                        "deliveries"
                    ]
                )
            ),
            "three deliveries recorded with their attempt",
        )
        _until(lambda: _get(world, f"/vehicles/{VIN}")["status"], "the vehicle's status stored")
        yield world
    finally:
        thread.stop()
        receiver.stop()
        broker.stop()
        backend_log.removeHandler(logged)
        backend_log.setLevel(old_level)


def _ids(page: dict[str, Any]) -> list[str]:
    return [e["eventId"] for e in page["_embedded"]["events"]]


def test_a_vehicles_events_newest_first_filtered_and_paged(world: World) -> None:
    e1, e2, e3 = world.events
    page = _get(world, f"/vehicles/{VIN}/events")
    assert _ids(page) == [e3, e2, e1] and page["total"] == 3  # the local monitor's: not stored
    first = page["_embedded"]["events"][0]
    assert first["monitorId"] == world.m1 and first["skipReason"] is None
    (value,) = first["event"]["values"]  # the MonitorEvent, as the webhook carried it
    assert value["data"] == OIL and value["value"]["body"]["literalValue"] == "140"
    assert first["event"]["vin"] == VIN and first["eventDate"] == first["event"]["eventDate"]
    window = {
        "from": format_date(datetime.fromtimestamp(world.at[1] - 1, tz=UTC)),
        "to": format_date(datetime.fromtimestamp(world.at[1] + 1, tz=UTC)),
    }
    assert _ids(_get(world, f"/vehicles/{VIN}/events", **window)) == [e2]
    assert _ids(_get(world, f"/vehicles/{VIN}/events", monitorId="other")) == []
    # pages: the next link keeps the filter and resolves
    one = _get(world, f"/vehicles/{VIN}/events", pageSize="2", monitorId=world.m1)
    assert _ids(one) == [e3, e2] and one["totalPage"] == 2
    nxt = httpx.get(world.api + one["_links"]["next"]["href"], headers=ADMIN).json()
    assert _ids(nxt) == [e1]
    assert "monitorId=" in one["_links"]["next"]["href"]
    # by fleet (and vehicle), by monitor
    assert _ids(_get(world, "/fleets/fleet-1/events", vin=VIN)) == [e3, e2, e1]
    assert _ids(_get(world, f"/monitors/{world.m1}/events")) == [e3, e2, e1]
    assert len(_ids(_get(world, "/fleets/fleet-2/events"))) == 1


def test_bad_time_ranges_and_filters_are_400_with_the_parameter(world: World) -> None:
    for query in ({"from": "yesterday"}, {"to": "2026-01-01T00:00:00"}, {"vin": "a/b"}):
        answer = httpx.get(f"{world.api}/vehicles/{VIN}/events?{urlencode(query)}", headers=ADMIN)
        assert answer.status_code == 400
        assert answer.json()["problems"][0]["path"] in query


def test_a_token_reads_only_the_events_of_its_fleets(world: World) -> None:
    assert len(_ids(_get(world, "/fleets/fleet-1/events", READER))) == 3
    for path in ("/fleets/fleet-2/events", f"/vehicles/{VIN2}/events", f"/vehicles/{VIN2}"):
        assert httpx.get(world.api + path, headers=READER).status_code == 403
    assert httpx.get(f"{world.api}/monitors/{world.m2}/events", headers=READER).status_code == 404
    assert httpx.get(f"{world.api}/monitors/{world.m2}", headers=READER).status_code == 404
    assert httpx.get(f"{world.api}/vehicles/{VIN}/events").status_code == 401


def test_a_vehicles_last_known_state(world: World) -> None:
    _e1, e2, e3 = world.events
    state = _get(world, f"/vehicles/{VIN}", READER)
    assert state["fleetId"] == "fleet-1"
    status = state["status"]
    assert status["online"] is True and status["version"] == "9.9.9"
    assert status["outboxDepth"] == 2
    assert state["position"]["eventId"] == e2  # the latest event that carried one
    assert state["position"]["position"] == {"latitude": 48.9, "longitude": 2.4}
    values = {v["data"]: v for v in state["values"]}
    assert set(values) == {OIL, SPEED}
    assert values[OIL]["eventId"] == e3
    assert values[OIL]["value"]["body"]["literalValue"] == "140"
    assert values[SPEED]["eventId"] == e2
    assert state["lastEventAt"] == format_date(datetime.fromtimestamp(world.at[2], tz=UTC))


def test_deliveries_show_their_attempts(world: World) -> None:
    page = _get(world, f"/monitors/{world.m1}/deliveries")
    for delivery in page["_embedded"]["deliveries"]:
        assert delivery["state"] == "delivered"
        (attempt,) = delivery["attempts"]
        assert attempt["statusCode"] == 200 and attempt["outcome"] == "delivered"
    assert sorted(e for d in page["_embedded"]["deliveries"] for e in d["eventIds"]) == sorted(
        world.events
    )


def _hrefs(body: Any) -> Iterator[str]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "_links":
                for target in value.values():
                    assert set(target) == {"href"}  # one form everywhere
                    yield target["href"]
            else:
                yield from _hrefs(value)
    elif isinstance(body, list):
        for item in body:
            yield from _hrefs(item)


def test_every_link_resolves_and_has_one_form(world: World) -> None:
    """Follow every ``_links`` entry from the main resources, two levels deep."""
    start = [
        f"/vehicles/{VIN}",
        f"/vehicles/{VIN}/events",
        f"/vehicles/{VIN}/monitors",
        f"/monitors/{world.m1}/deliveries",
        "/fleets/fleet-2/monitors",
        "/fleets/fleet-1/vehicles",
    ]
    seen: set[str] = set()
    frontier = start
    for _depth in range(2):
        found = []
        for path in frontier:
            body = _get(world, path)
            for href in _hrefs(body):
                assert href.startswith("/"), href  # base_url is empty here: paths, all of them
                if href not in seen:
                    seen.add(href)
                    found.append(href)
        frontier = found
    for href in seen:
        assert httpx.get(world.api + href, headers=ADMIN).status_code == 200, href
    kinds = {
        href.split("/")[1] + "/" + "/".join(href.split("?")[0].split("/")[3:]) for href in seen
    }
    assert {"vehicles/", "fleets/", "monitors/", "deliveries/", "monitors/events"} <= kinds


def test_each_attempt_is_logged_and_a_local_monitor_once(world: World) -> None:
    attempts = [line for line in world.logged.lines if line.startswith("delivery ")]
    assert len(attempts) == 4, attempts  # three for m1, one for m2
    assert all("attempt 1 delivered status 200 in " in line for line in attempts), attempts
    assert all(" ms" in line and "127.0.0.1:" in line and "/hook" not in line for line in attempts)
    local = [line for line in world.logged.lines if "local-oil" in line]
    assert len(local) == 1 and "match no monitor" in local[0], local
    metrics = httpx.get(f"{world.api}/metrics").text
    assert 'edgemon_ingest_skipped_total{reason="unknown_monitor"} 3.0' in metrics


def test_the_document_lists_the_read_endpoints_and_the_webhook(world: World) -> None:
    document = httpx.get(f"{world.api}/openapi.json").json()
    for path in (
        "/vehicles/{vin}",
        "/vehicles/{vin}/events",
        "/fleets/{fleetId}/events",
        "/monitors/{monitorId}",
        "/monitors/{monitorId}/events",
    ):
        assert "get" in document["paths"][path], path
    hook = document["webhooks"]["monitorEvents"]["post"]
    body = hook["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/MonitorEvents"}


def test_docs_render_the_operations_in_headless_chromium(world: World, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or "/usr/bin/chromium"
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=15000",
        "--dump-dom",
        f"{world.api}/docs",
    ]
    # The clock-ahead runs preload libfaketime; Chromium's own timers hang under it, and what
    # the page shows does not depend on the date, so the browser runs on the real clock.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and "FAKETIME" not in k}
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        dom, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()  # by its PID
        proc.communicate()
        raise
    assert 'class="swagger-ui' in dom
    assert dom.count('class="opblock ') >= 27, dom[:2000]  # every operation, rendered
    for path in ("/vehicles/{vin}/events", "/monitors/{monitorId}/deliveries", "/healthz"):
        assert f'data-path="{path}"' in dom, path
    assert "monitorEvents" in dom  # the webhooks section
    assert 'src="http' not in dom and 'href="http' not in dom  # every asset from the backend


def test_after_a_monitor_is_deleted_its_events_and_deliveries_link_only_what_resolves(
    world: World,
) -> None:
    """Last in the module: it deletes fleet-2's monitor from the shared backend."""
    (event,) = _get(world, "/fleets/fleet-2/events")["_embedded"]["events"]
    assert set(event["_links"]) == {"vehicle", "monitor"}
    (delivery,) = _get(world, f"/monitors/{world.m2}/deliveries")["_embedded"]["deliveries"]
    gone = httpx.delete(f"{world.api}/fleets/fleet-2/monitors/{world.m2}", headers=ADMIN)
    assert gone.status_code == 204
    (event,) = _get(world, "/fleets/fleet-2/events")["_embedded"]["events"]
    assert set(event["_links"]) == {"vehicle"} and event["monitorId"] == world.m2
    kept = _get(world, f"/deliveries/{delivery['deliveryId']}")
    assert set(kept["_links"]) == {"self"}
    for href in (*_hrefs(event), *_hrefs(kept)):
        assert httpx.get(world.api + href, headers=ADMIN).status_code == 200, href
