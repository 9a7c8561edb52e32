"""The monitor API: every endpoint, authentication, validation, paging, retained topics."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from agent.wire import Topics
from backend.api.routes import ApiContext, build_api
from backend.metrics import Metrics
from backend.monitor_channel import MemoryMonitorChannel
from backend.store.records import Attempt, AttemptResult, VehicleMonitorState
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import (
    READ_ONLY,
    T0,
    TOKEN,
    VIN,
    ManualClock,
    api_tokens,
    ingest_events,
    make_event,
    monitor_definition,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
TARGET = "https://hooks.example/in"


@pytest.fixture
def api(store: SqliteStore) -> Iterator[tuple[TestClient, MemoryMonitorChannel, SqliteStore]]:
    channel = MemoryMonitorChannel()
    ctx = ApiContext(
        store=store,
        channel=channel,
        metrics=Metrics(),
        tokens=api_tokens(),
        clock=ManualClock(),
    )
    with TestClient(build_api(ctx)) as client:
        yield client, channel, store


Api = tuple[TestClient, MemoryMonitorChannel, SqliteStore]


def _create(client: TestClient, base: str = "/fleets/fleet-1", **kw: Any) -> dict[str, Any]:
    response = client.post(f"{base}/monitors", json=monitor_definition(TARGET, **kw), headers=AUTH)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_returns_a_monitor_ref_and_publishes_retained(api: Api) -> None:
    client, channel, _ = api
    ref = _create(client)
    assert set(ref) == {"monitorId", "status", "delivery", "createdAt", "updatedAt", "_links"}
    assert ref["status"] == "Running" and ref["delivery"] == "pushed"
    mid = ref["monitorId"]
    assert ref["_links"]["self"]["href"] == f"/fleets/fleet-1/monitors/{mid}"
    retained = json.loads(channel.retained[Topics().fleet_monitor("fleet-1", mid)])
    assert retained["status"] == "Running" and retained["label"] == "oil hot"
    vref = _create(client, f"/vehicles/{VIN}")
    assert Topics().vehicle_monitor(VIN, vref["monitorId"]) in channel.retained


def test_read_shows_definition_and_each_vehicles_state(api: Api) -> None:
    client, _, store = api
    mid = _create(client)["monitorId"]
    for vin, fleet in (("VIN1", "fleet-1"), ("VIN2", "fleet-1"), ("VIN3", "fleet-2")):
        store.put_vehicle(vin, fleet, T0)
    store.set_vehicle_state(VehicleMonitorState("VIN1", mid, "applied", [], "h1", "t"))
    reasons = [{"path": "$.triggerParam", "message": "unknown data"}]
    store.set_vehicle_state(VehicleMonitorState("VIN2", mid, "rejected", reasons, "h1", "t"))
    # another fleet's vehicle can report on any monitor id from its own topic: not shown
    store.set_vehicle_state(VehicleMonitorState("VIN3", mid, "rejected", reasons, "h1", "t"))
    body = client.get(f"/fleets/fleet-1/monitors/{mid}", headers=AUTH).json()
    assert body["monitor"]["label"] == "oil hot"
    assert [(v["vin"], v["state"]) for v in body["vehicles"]] == [
        ("VIN1", "applied"),
        ("VIN2", "rejected"),
    ]
    assert body["vehicles"][1]["reasons"] == reasons


def test_list_is_paged_in_the_stellantis_collection_shape(api: Api) -> None:
    client, _, _ = api
    ids = [_create(client)["monitorId"] for _ in range(5)]
    page = client.get("/fleets/fleet-1/monitors?pageSize=2&indexRange=2-", headers=AUTH).json()
    assert page["total"] == 5 and page["totalPage"] == 3 and page["currentPage"] == 1
    assert [m["monitorId"] for m in page["_embedded"]["monitors"]] == ids[2:4]
    assert set(page["_links"]) == {"self", "first", "last", "next", "prev"}
    ranged = client.get("/fleets/fleet-1/monitors?indexRange=1-1", headers=AUTH).json()
    assert [m["monitorId"] for m in ranged["_embedded"]["monitors"]] == ids[1:2]
    other = client.get("/fleets/fleet-2/monitors", headers=AUTH).json()
    assert other["total"] == 0
    bad = client.get("/fleets/fleet-1/monitors?pageSize=61&indexRange=x", headers=AUTH)
    assert bad.status_code == 400
    assert {p["path"] for p in bad.json()["problems"]} == {"pageSize", "indexRange"}
    # Found by schemathesis: a start past SQLite's 64-bit integers was a 500, and a
    # non-ASCII digit passed str.isdigit() then broke int().
    huge = client.get(f"/fleets/fleet-1/monitors?indexRange={2**70}-", headers=AUTH)
    assert huge.status_code == 400
    assert client.get("/fleets/fleet-1/monitors?pageSize=\u00b2", headers=AUTH).status_code == 400


def test_replace_pause_resume_delete(api: Api) -> None:
    client, channel, _ = api
    mid = _create(client)["monitorId"]
    url = f"/fleets/fleet-1/monitors/{mid}"
    topic = Topics().fleet_monitor("fleet-1", mid)
    changed = monitor_definition(TARGET, policy="Always")
    changed["label"] = "renamed"
    assert client.put(url, json=changed, headers=AUTH).status_code == 202
    assert json.loads(channel.retained[topic])["label"] == "renamed"
    paused = client.put(f"{url}/status", json={"status": "Paused"}, headers=AUTH)
    assert paused.status_code == 202 and paused.json()["status"] == "Paused"
    assert json.loads(channel.retained[topic])["status"] == "Paused"
    assert client.get(url, headers=AUTH).json()["status"] == "Paused"
    resumed = client.put(f"{url}/status", json={"status": "Running"}, headers=AUTH)
    assert resumed.json()["status"] == "Running"
    bad = client.put(f"{url}/status", json={"status": "Failed"}, headers=AUTH)
    assert bad.status_code == 400
    deleted = client.delete(url, headers=AUTH)
    assert deleted.status_code == 204 and deleted.content == b""
    assert topic not in channel.retained
    assert client.get(url, headers=AUTH).status_code == 404
    assert client.delete(url, headers=AUTH).status_code == 404


def test_validation_reports_every_problem(api: Api) -> None:
    client, _, _ = api
    bad = monitor_definition("http://plain.example/in")
    bad["label"] = 7
    bad["triggerParam"]["boolExp"] = "hot &"
    response = client.post("/fleets/fleet-1/monitors", json=bad, headers=AUTH)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 40000 and {"uuid", "message", "timestamp"} <= set(body)
    paths = {p["path"] for p in body["problems"]}
    assert {
        "$.label",
        "$.triggerParam.boolExp",
        "$.subscribeParam.callback.webhook.target",
    } <= paths
    not_json = client.post("/fleets/fleet-1/monitors", content=b"{", headers=AUTH)
    assert not_json.status_code == 400
    not_object = client.post("/fleets/fleet-1/monitors", json=[1], headers=AUTH)
    assert not_object.status_code == 400
    bad_owner = client.post("/fleets/bad%20id/monitors", json=bad, headers=AUTH)
    assert bad_owner.status_code == 400


def test_authentication_and_scopes(api: Api) -> None:
    client, _, _ = api
    mid = _create(client)["monitorId"]
    missing = client.get("/fleets/fleet-1/monitors")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = client.get("/fleets/fleet-1/monitors", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = client.get("/fleets/fleet-1/monitors", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    reader = {"Authorization": f"Bearer {READ_ONLY}"}
    assert client.get("/fleets/fleet-1/monitors", headers=reader).status_code == 200
    body = monitor_definition(TARGET)
    assert client.post("/fleets/fleet-1/monitors", json=body, headers=reader).status_code == 403
    assert client.delete(f"/fleets/fleet-1/monitors/{mid}", headers=reader).status_code == 403


def test_not_found_across_scopes(api: Api) -> None:
    client, _, _ = api
    mid = _create(client)["monitorId"]
    assert client.get(f"/fleets/fleet-2/monitors/{mid}", headers=AUTH).status_code == 404
    assert client.get(f"/vehicles/{VIN}/monitors/{mid}", headers=AUTH).status_code == 404
    put = client.put(f"/fleets/fleet-2/monitors/{mid}/status", json={"status": "Paused"},
                     headers=AUTH)  # fmt: skip
    assert put.status_code == 404
    assert client.get("/monitors/nope/deliveries", headers=AUTH).status_code == 404
    assert client.get("/deliveries/nope", headers=AUTH).status_code == 404
    assert client.post("/deliveries/nope/resend", headers=AUTH).status_code == 404


def test_delivery_history_dead_letters_and_resend(api: Api) -> None:
    client, _, store = api
    mid = _create(client, f"/vehicles/{VIN}")["monitorId"]
    ingest_events(store, [make_event(mid)], T0)
    (claim,) = store.claim_due(T0, 10, {}, 8, T0 + 60)
    from backend.delivery.dispatcher import judge
    from backend.delivery.webhooks import Answer

    for number in (1, 2):
        claimed = store.claim_due(T0 + 100 * number, 10, {}, 8, T0 + 1000) or [claim]
        result = judge(claimed[0], Answer(500), started=T0, now=T0 + 100 * number,
                       max_age=259200, none_delay=10)  # fmt: skip
        store.record_results([result], T0 + 100 * number)
    history = client.get(f"/monitors/{mid}/deliveries", headers=AUTH).json()
    (delivery,) = history["_embedded"]["deliveries"]
    assert delivery["state"] == "dead"
    assert [a["statusCode"] for a in delivery["attempts"]] == [500, 500]
    dead = client.get(f"/monitors/{mid}/dead-letters", headers=AUTH).json()
    assert dead["total"] == 1
    reader = {"Authorization": f"Bearer {READ_ONLY}"}
    did = delivery["deliveryId"]
    assert client.post(f"/deliveries/{did}/resend", headers=reader).status_code == 403
    resent = client.post(f"/deliveries/{did}/resend", headers=AUTH)
    assert resent.status_code == 202 and resent.json()["state"] == "pending"
    assert client.post(f"/deliveries/{did}/resend", headers=AUTH).status_code == 409
    one = client.get(f"/deliveries/{did}", headers=AUTH).json()
    assert one["state"] == "pending" and len(one["attempts"]) == 2
    filtered = client.get(f"/monitors/{mid}/deliveries?state=delivered", headers=AUTH).json()
    assert filtered["total"] == 0
    assert client.get(f"/monitors/{mid}/deliveries?state=x", headers=AUTH).status_code == 400


def test_all_dead_letters_of_a_monitor_are_resent_in_bounded_calls(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.api import routes

    monkeypatch.setattr(routes, "RESEND_BATCH", 2)
    client, _, store = api
    mid = _create(client, f"/vehicles/{VIN}")["monitorId"]
    other = _create(client, f"/vehicles/{VIN}")["monitorId"]
    ingest_events(store, [make_event(mid, at=T0 + i) for i in range(3)], T0)
    ingest_events(store, [make_event(other)], T0)
    store.delete_monitor(other, T0)  # its deliveries are dead letters now ("monitor deleted")
    for claim in store.claim_due(T0, 10, {}, 10, T0 + 60):
        attempt = Attempt(claim.delivery_id, 1, T0, 0.1, "failed", 500, "HTTP 500")
        store.record_results([AttemptResult(claim.delivery_id, attempt, mid, "dead")], T0)
    path = f"/monitors/{mid}/dead-letters/resend"
    first = client.post(path, headers=AUTH)
    assert first.status_code == 202
    assert first.json() == {"monitorId": mid, "resent": 2, "remaining": 1}
    assert client.post(path, headers=AUTH).json() == {"monitorId": mid, "resent": 1, "remaining": 0}
    assert client.post(path, headers=AUTH).json()["resent"] == 0
    assert client.get(f"/monitors/{mid}/dead-letters", headers=AUTH).json()["total"] == 0
    pending = client.get(f"/monitors/{mid}/deliveries?state=pending", headers=AUTH).json()
    assert pending["total"] == 3
    # a deleted monitor's dead letters are not re-sent (its webhook is gone with it)
    assert client.post(f"/monitors/{other}/dead-letters/resend", headers=AUTH).status_code == 404
    assert client.post("/monitors/nope/dead-letters/resend", headers=AUTH).status_code == 404


def test_health_metrics_and_openapi(api: Api) -> None:
    client, _, _ = api
    assert client.get("/healthz").json()["status"] == "ok"
    metrics = client.get("/metrics").text
    for name in (
        "edgemon_events_ingested_total",
        "edgemon_events_duplicate_total",
        "edgemon_delivery_queue",
        "edgemon_ingest_to_delivery_seconds_bucket",
    ):
        assert name in metrics
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/fleets/{fleetId}/monitors/{monitorId}/status" in document["paths"]


def test_openapi_document_is_valid() -> None:
    """Checked against the OpenAPI 3.1 meta-schema (the copy schemathesis ships)."""
    from jsonschema import Draft202012Validator
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    from backend.api.openapi import openapi_document

    errors = list(Draft202012Validator(OPENAPI_31).iter_errors(openapi_document()))
    assert errors == []
    broken = openapi_document()
    broken["paths"]["/healthz"]["get"]["responses"] = "nope"
    assert list(Draft202012Validator(OPENAPI_31).iter_errors(broken)) != []


def test_paths_in_the_document_match_the_app(tmp_path: Path) -> None:
    from starlette.routing import Route

    from backend.api.openapi import openapi_document

    store = SqliteStore(tmp_path / "b.db")
    app = build_api(ApiContext(store, MemoryMonitorChannel(), Metrics(), ()))
    served = {r.path for r in app.routes if isinstance(r, Route)} - {"/openapi.json"}
    served = {path for path in served if not path.startswith("/docs")}  # the page, not the API
    assert served == set(openapi_document()["paths"])
    store.close()


def test_the_documented_example_is_accepted(api: Api) -> None:
    from backend.api.openapi import EXAMPLE_MONITOR

    client, _, _ = api
    response = client.post("/fleets/fleet-1/monitors", json=EXAMPLE_MONITOR, headers=AUTH)
    assert response.status_code == 202, response.text


def test_the_states_have_one_definition_the_document_lists() -> None:
    """backend.store.records defines each set of states once; the OpenAPI document and the API's
    checks take them from there (a state added to the store cannot be missing from the doc)."""
    from typing import get_args

    from backend.api.openapi import openapi_document
    from backend.store.records import (
        ATTEMPT_OUTCOMES,
        DELIVERY_STATES,
        MONITOR_STATUSES,
        REPORTED_STATES,
        SETTABLE_STATUSES,
        AfterAttempt,
    )

    schemas = openapi_document()["components"]["schemas"]
    delivery = schemas["Delivery"]["properties"]
    assert delivery["state"]["enum"] == list(DELIVERY_STATES)
    assert delivery["attempts"]["items"]["properties"]["outcome"]["enum"] == list(ATTEMPT_OUTCOMES)
    assert schemas["MonitorRef"]["properties"]["status"]["enum"] == list(MONITOR_STATUSES)
    setter = schemas["MonitorStatusSetter"]["properties"]["status"]["enum"]
    assert setter == list(SETTABLE_STATUSES)
    assert set(SETTABLE_STATUSES) < set(MONITOR_STATUSES)
    assert set(get_args(AfterAttempt)) < set(DELIVERY_STATES)
    assert "applied" in json.dumps(schemas["Monitor"]) and len(REPORTED_STATES) == 2


def test_an_unknown_delivery_state_filter_lists_the_states(api: Api) -> None:
    client = api[0]
    mid = _create(client, f"/vehicles/{VIN}")["monitorId"]
    answer = client.get(f"/monitors/{mid}/deliveries?state=lost", headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert "open, pending, delivered, dead" in answer.text


class _LoopWatchingStore:
    """The store, noting every call made on a thread that runs an event loop."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.on_loop: list[str] = []
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def call(*args: Any, **kw: Any) -> Any:
            import asyncio

            self.calls += 1
            try:
                asyncio.get_running_loop()
                self.on_loop.append(name)
            except RuntimeError:  # no loop on this thread: a worker
                pass
            return method(*args, **kw)

        return call


def test_handlers_do_their_sqlite_work_off_the_event_loop(store: SqliteStore) -> None:
    watched = _LoopWatchingStore(store)
    ctx = ApiContext(
        store=watched,  # type: ignore[arg-type]
        channel=MemoryMonitorChannel(),
        metrics=Metrics(),
        tokens=api_tokens(),
        clock=ManualClock(),
    )
    with TestClient(build_api(ctx)) as client:
        mid = _create(client, f"/vehicles/{VIN}")["monitorId"]
        url = f"/vehicles/{VIN}/monitors/{mid}"
        assert client.get(url, headers=AUTH).status_code == 200
        paused = client.put(f"{url}/status", json={"status": "Paused"}, headers=AUTH)
        assert paused.status_code == 202
        assert client.get(f"/monitors/{mid}/deliveries", headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.delete(url, headers=AUTH).status_code == 204
    assert watched.calls >= 8
    assert watched.on_loop == []


def test_the_monitor_view_shows_obd_cost_and_missing_data(api: Api) -> None:
    client, channel, store = api
    mid = _create(client)["monitorId"]
    for vin in ("VIN1", "VIN2"):
        store.put_vehicle(vin, "fleet-1", T0)
        store.set_vehicle_state(VehicleMonitorState(vin, mid, "applied", [], "h1", "t"))
    # what the monitor channel heard: VIN1's state said 12 requests/min, and its manifest
    # lacks the oil temperature the monitor reads; VIN2 sent neither
    channel.note_state(mid, "VIN1", VehicleMonitorState("VIN1", mid, "applied", [], "h1", "t",
                                                        obd_requests_per_minute=12.0))  # fmt: skip
    channel.capabilities["VIN1"] = frozenset({"obd.engine.rpm"})
    channel.capability_warnings = 3
    vehicles = client.get(f"/fleets/fleet-1/monitors/{mid}", headers=AUTH).json()["vehicles"]
    assert [(v["vin"], v["obdRequestsPerMinute"], v["missingData"]) for v in vehicles] == [
        ("VIN1", 12.0, ["vehicle.engines.thermic.oil.temp"]),
        ("VIN2", None, None),
    ]
    metrics = client.get("/metrics").text
    assert "edgemon_capability_warnings_total 3.0" in metrics
    channel.note_state(mid, "VIN1", None)  # the state cleared: its cost goes with it
    assert channel.obd_cost(mid, "VIN1") is None
