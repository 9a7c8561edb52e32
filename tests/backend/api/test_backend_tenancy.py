"""Tenancy (issue 12, findings 4, 8 and 10): vehicles provisioned into fleets route events; tokens
reach only their fleets; attribute values are write-only; secrets stay out of reprs; the store
file is private; retained definitions carry no delivery secrets."""

from __future__ import annotations

import os
import sqlite3
import stat
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from agent.wire import Topics, event_to_json
from backend.api.routes import ApiContext, build_api
from backend.api.tenancy import MASK, find_token, keep_masked, masked, masked_url
from backend.app import Backend
from backend.config import ApiToken, config_from_dict
from backend.errors import ConfigError, IngestError
from backend.ingest.intake import EventIntake
from backend.metrics import Metrics
from backend.monitor_channel import MemoryMonitorChannel, vehicle_definition
from backend.store.records import MonitorRecord
from backend.store.sqlite import MIGRATIONS, SqliteStore
from tests.backend.conftest import (
    FLEET,
    READ_ONLY,
    SECRET,
    T0,
    TOKEN,
    VIN,
    BackendThread,
    ManualClock,
    api_tokens,
    backend_config,
    ingest_events,
    make_event,
    monitor_definition,
)

TARGET = "https://hooks.example/in"
OTHER_VIN = "VF3OTHER000000001"
WRITER = "fleet-1-writer-0123456789"
ADMIN_AUTH = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": f"Bearer {READ_ONLY}"}
FLEET_WRITER = {"Authorization": f"Bearer {WRITER}"}
TOPICS = Topics()

Api = tuple[TestClient, SqliteStore]


@pytest.fixture
def api(store: SqliteStore) -> Iterator[Api]:
    writer = ApiToken(WRITER, fleets=frozenset({FLEET}))
    ctx = ApiContext(
        store=store,
        channel=MemoryMonitorChannel(),
        metrics=Metrics(),
        tokens=(*api_tokens(), writer),
        clock=ManualClock(),
    )
    with TestClient(build_api(ctx)) as client:
        yield client, store


def _create(client: TestClient, base: str, auth: dict[str, str], **kw: Any) -> str:
    answer = client.post(f"{base}/monitors", json=monitor_definition(TARGET, **kw), headers=auth)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["monitorId"])


# -- routing by the backend's records ------------------------------------------------------------


def test_events_route_by_the_recorded_fleet_never_the_claim(store: SqliteStore) -> None:
    fleet_monitor = "m-fleet-2"
    store.create_monitor(
        MonitorRecord(
            fleet_monitor, "fleet", "fleet-2", monitor_definition(TARGET), "Running", T0, T0
        )
    )
    intake = EventIntake(store, TOPICS)

    def prepare(vin: str, claim: str | None) -> Any:
        event = replace(make_event(fleet_monitor, vin=vin), fleet_id=claim)
        return intake.prepare(TOPICS.events(vin), event_to_json(event))

    for claim in (FLEET, None):  # VIN's true fleet, or no claim: still not fleet-2's monitor
        found = prepare(VIN, claim)
        assert found.skip_reason == "wrong_fleet" and found.routes == ()
    with pytest.raises(IngestError) as mismatch:
        prepare(VIN, "fleet-2")
    assert mismatch.value.reason == "fleet_mismatch"
    with pytest.raises(IngestError) as unknown:
        prepare(OTHER_VIN, "fleet-2")
    assert unknown.value.reason == "unknown_vehicle"
    store.put_vehicle(OTHER_VIN, "fleet-2", T0)
    (routed,) = prepare(OTHER_VIN, None).routes  # no claim: the record fills it in
    assert routed.fleet_id == "fleet-2"
    assert '"fleetId":"fleet-2"' in prepare(OTHER_VIN, None).webhook_json


def test_a_moved_vehicle_follows_its_new_fleet(store: SqliteStore) -> None:
    mid = "m-fleet-1"
    store.create_monitor(
        MonitorRecord(mid, "fleet", FLEET, monitor_definition(TARGET), "Running", T0, T0)
    )
    event = replace(make_event(mid), fleet_id=None)
    assert ingest_events(store, [event], T0) == [True]
    assert store.put_vehicle(VIN, "fleet-9", T0) is False  # known: moved, not created
    intake = EventIntake(store, TOPICS)
    later = replace(make_event(mid), fleet_id=None)
    assert intake.prepare(TOPICS.events(VIN), event_to_json(later)).skip_reason == "wrong_fleet"
    (claim,) = store.claim_due(T0, 10, {}, 8, T0 + 60)
    assert claim.fleet_id == FLEET  # the delivery keeps the fleet whose secret signs it


# -- the API: provisioning, token scope, masking ------------------------------------------------


def test_vehicles_are_provisioned_by_admin_tokens_only(api: Api) -> None:
    client, store = api
    url = f"/fleets/fleet-2/vehicles/{OTHER_VIN}"
    assert client.put(url, headers=FLEET_WRITER).status_code == 403
    created = client.put(url, headers=ADMIN_AUTH)
    assert created.status_code == 201 and created.json()["fleetId"] == "fleet-2"
    assert client.put(url, headers=ADMIN_AUTH).status_code == 200
    assert store.vehicle_fleet(OTHER_VIN) == "fleet-2"
    listed = client.get("/fleets/fleet-2/vehicles", headers=ADMIN_AUTH).json()
    assert [v["vin"] for v in listed["_embedded"]["vehicles"]] == [OTHER_VIN]
    assert client.get("/fleets/fleet-2/vehicles", headers=READER).status_code == 403
    own = client.get(f"/fleets/{FLEET}/vehicles", headers=READER).json()
    assert [v["vin"] for v in own["_embedded"]["vehicles"]] == [VIN]
    assert client.put("/fleets/fleet-2/vehicles/bad%20vin", headers=ADMIN_AUTH).status_code == 400
    assert client.delete(url, headers=FLEET_WRITER).status_code == 403
    assert client.delete(url, headers=ADMIN_AUTH).status_code == 204
    assert client.delete(url, headers=ADMIN_AUTH).status_code == 404
    assert store.vehicle_fleet(OTHER_VIN) is None


def test_a_fleet_token_reaches_its_fleet_and_its_vehicles_only(api: Api) -> None:
    client, store = api
    foreign = _create(client, "/fleets/fleet-2", ADMIN_AUTH)
    own = _create(client, f"/fleets/{FLEET}", FLEET_WRITER)
    mine = _create(client, f"/vehicles/{VIN}", FLEET_WRITER)  # VIN is provisioned in FLEET
    assert client.get("/fleets/fleet-2/monitors", headers=FLEET_WRITER).status_code == 403
    body = monitor_definition(TARGET)
    assert (
        client.post("/fleets/fleet-2/monitors", json=body, headers=FLEET_WRITER).status_code == 403
    )
    other = client.post(f"/vehicles/{OTHER_VIN}/monitors", json=body, headers=FLEET_WRITER)
    assert other.status_code == 403  # not provisioned anywhere: no fleet token reaches it
    assert client.get(f"/fleets/fleet-2/monitors/{foreign}", headers=READER).status_code == 403
    assert client.get(f"/monitors/{foreign}/deliveries", headers=READER).status_code == 404
    assert client.get(f"/monitors/{own}/deliveries", headers=READER).status_code == 200
    assert client.get(f"/vehicles/{VIN}/monitors/{mine}", headers=READER).status_code == 200

    ingest_events(store, [make_event(mine)], T0)
    store.put_vehicle(OTHER_VIN, "fleet-2", T0)
    theirs = _create(client, f"/vehicles/{OTHER_VIN}", ADMIN_AUTH)
    ingest_events(store, [replace(make_event(theirs, vin=OTHER_VIN), fleet_id=None)], T0)
    for monitor_id, reachable in ((mine, True), (theirs, False)):
        page = client.get(f"/monitors/{monitor_id}/deliveries", headers=ADMIN_AUTH).json()
        delivery = page["_embedded"]["deliveries"][0]["deliveryId"]
        answer = client.get(f"/deliveries/{delivery}", headers=READER)
        assert answer.status_code == (200 if reachable else 404)
        resend = client.post(f"/deliveries/{delivery}/resend", headers=FLEET_WRITER)
        assert resend.status_code == (409 if reachable else 404)  # 409: not dead-lettered
        bulk = client.post(f"/monitors/{monitor_id}/dead-letters/resend", headers=FLEET_WRITER)
        assert bulk.status_code == (202 if reachable else 404)
        reading = client.post(f"/monitors/{monitor_id}/dead-letters/resend", headers=READER)
        assert reading.status_code == 403  # deliveries:write is needed


def test_attribute_values_are_write_only(api: Api) -> None:
    client, store = api
    attributes = [
        {"type": "Header", "key": "Authorization", "value": "Bearer customer-secret"},
        {"type": "Header", "key": "X-Vehicle", "value": "$vin", "secret": False},
        {"type": "Query", "key": "sig", "value": "query-secret"},
        {"type": "Body", "key": "vin", "value": "$vin"},
        {"type": "Body", "key": "pin", "value": "1234", "secret": True},
    ]
    base = f"/fleets/{FLEET}"
    mid = _create(client, base, ADMIN_AUTH, attributes=attributes)
    for auth in (READER, ADMIN_AUTH):  # write-only: masked for every token
        shown = client.get(f"{base}/monitors/{mid}", headers=auth).json()["monitor"]
        values = [a["value"] for a in shown["subscribeParam"]["callback"]["webhook"]["attributes"]]
        assert values == [MASK, "$vin", MASK, "$vin", MASK]
    listed = client.get(f"{base}/monitors", headers=READER).text
    assert "customer-secret" not in listed and "query-secret" not in listed

    # A definition read back and sent again keeps the stored values behind the masks.
    shown["label"] = "renamed"
    assert client.put(f"{base}/monitors/{mid}", json=shown, headers=ADMIN_AUTH).status_code == 202
    stored = store.get_monitor(mid)
    assert stored is not None and stored.definition["label"] == "renamed"
    kept = stored.definition["subscribeParam"]["callback"]["webhook"]["attributes"]
    assert [a["value"] for a in kept] == ["Bearer customer-secret", "$vin", "query-secret",
                                          "$vin", "1234"]  # fmt: skip
    kept.append({"type": "Header", "key": "X-New", "value": MASK})
    refused = client.put(f"{base}/monitors/{mid}", json=stored.definition, headers=ADMIN_AUTH)
    assert refused.status_code == 400
    (problem,) = refused.json()["problems"]
    assert problem["path"] == "$.subscribeParam.callback.webhook.attributes[5].value"


_ATTRIBUTE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Header", "Query", "Body"]),
        "key": st.sampled_from(["Authorization", "X-Tag", "vin"]),
        "value": st.text(max_size=12).filter(lambda v: v != MASK),
    },
    optional={"secret": st.booleans()},
)


@given(
    webhook=st.lists(_ATTRIBUTE, max_size=5),
    channel=st.lists(_ATTRIBUTE, max_size=3),
    top=st.lists(_ATTRIBUTE, max_size=3),
    wrapped=st.booleans(),
)
def test_masking_hides_every_secret_and_a_read_back_definition_keeps_them(
    webhook: list[dict[str, Any]],
    channel: list[dict[str, Any]],
    top: list[dict[str, Any]],
    wrapped: bool,
) -> None:
    definition = monitor_definition(TARGET, attributes=webhook)
    definition["subscribeParam"]["callbackAttributes"] = {"webhook": channel}
    definition["attributes"] = top
    if wrapped:
        definition = {"monitorId": "m", "monitor": definition, "status": "Running"}
    shown = masked(definition)

    def lists(obj: dict[str, Any]) -> list[list[dict[str, Any]]]:
        inner = obj["monitor"] if wrapped else obj
        subscribe = inner["subscribeParam"]
        return [
            subscribe["callback"]["webhook"]["attributes"],
            subscribe["callbackAttributes"]["webhook"],
            inner["attributes"],
        ]

    for originals, seen in zip(lists(definition), lists(shown), strict=True):
        for original, one in zip(originals, seen, strict=True):
            secret = original.get("secret", original["type"] != "Body")
            assert one["value"] == (MASK if secret else original["value"])
    assert keep_masked(shown, definition) == []
    assert shown == definition  # every value back in its place, duplicates of a key included


def test_delivery_urls_show_query_values_masked() -> None:
    assert (
        masked_url("https://h.example/in?sig=abc&vin=V1")
        == "https://h.example/in?sig=********&vin=********"
    )
    assert masked_url("https://h.example/in") == "https://h.example/in"


def test_tokens_are_found_by_constant_time_comparison() -> None:
    tokens = api_tokens()
    assert find_token(tokens, TOKEN) is tokens[0]
    assert find_token(tokens, READ_ONLY) is tokens[1]
    for presented in ("", TOKEN[:-1], TOKEN + "x", "t\u00e9st-token-0123456789", "\udcff"):
        assert find_token(tokens, presented) is None


def test_a_non_ascii_bearer_token_is_a_401(api: Api) -> None:
    client, _ = api
    header = {"Authorization": "Bearer t\u00e9st-token".encode("latin-1")}
    assert client.get(f"/fleets/{FLEET}/monitors", headers=header).status_code == 401


# -- configuration, files, retained definitions --------------------------------------------------


def test_secrets_stay_out_of_reprs(tmp_path: Path) -> None:
    other = "whsec_" + "b" * 32
    raw = backend_config(
        tmp_path,
        mqtt={"password": "broker-password"},
        webhooks={"fleet_secrets": {"fleet-2": other}},
    )
    config = config_from_dict(raw, tmp_path)
    assert config.webhooks.secret_for("fleet-2") == other
    assert config.webhooks.secret_for(FLEET) == SECRET
    text = repr(config)
    for secret in (TOKEN, READ_ONLY, SECRET, other, "broker-password"):
        assert secret not in text


def test_tokens_need_fleets_or_admin_and_callback_name_secrets_are_refused(
    tmp_path: Path,
) -> None:
    raw = backend_config(tmp_path, webhooks={"secrets": {"cb1": SECRET}})
    raw["api"]["tokens"] = [
        {"token": "unbound-token-0123456789"},
        {"token": "badfleet-token-0123456789", "fleets": ["a/b"]},
    ]
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, tmp_path)
    paths = {p.path for p in info.value.problems}
    assert paths == {"$.webhooks.secrets", "$.api.tokens[0].fleets", "$.api.tokens[1].fleets"}


def test_the_store_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "backend.db"
    old = os.umask(0o022)
    try:
        store = SqliteStore(path, durable=True)
        store.put_vehicle(VIN, FLEET, T0)
        files = [p for p in path.parent.iterdir() if p.name.startswith("backend.db")]
        assert {p.name for p in files} >= {"backend.db", "backend.db-wal"}
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        store.close()
    finally:
        os.umask(old)


def test_a_version_1_store_gains_the_vehicle_records(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    db.close()
    store = SqliteStore(path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.vehicle_fleet(VIN) is None
    store.close()


def test_retained_definitions_carry_only_what_a_vehicle_evaluates() -> None:
    attributes = [{"type": "Header", "key": "Authorization", "value": "Bearer x"}]
    definition = monitor_definition(TARGET, attributes=attributes)
    definition["subscribeParam"]["refreshEvent"] = 120
    definition["attributes"] = [{"type": "Body", "key": "k", "value": "v"}]
    stripped = vehicle_definition(definition)
    assert stripped == {
        "label": definition["label"],
        "triggerParam": definition["triggerParam"],
        "extendedEventParam": definition["extendedEventParam"],
        "subscribeParam": {"refreshEvent": 120},
    }
    wrapped = vehicle_definition({"monitorId": "m", "monitor": definition, "status": "Running"})
    assert wrapped == stripped


def test_vehicles_of_the_configuration_are_provisioned_at_start(tmp_path: Path) -> None:
    raw = backend_config(tmp_path)
    raw["fleets"] = {"fleet-2": {"vehicles": [OTHER_VIN]}, FLEET: {"vehicles": [VIN]}}
    config = config_from_dict(raw, tmp_path)
    assert config.vehicles == {OTHER_VIN: "fleet-2", VIN: FLEET}
    running = BackendThread(Backend(config, frozenset({"dispatcher"}))).start()
    running.stop()
    store = SqliteStore(config.store_path)
    assert store.vehicle_fleet(OTHER_VIN) == "fleet-2" and store.vehicle_fleet(VIN) == FLEET
    store.close()
    raw["fleets"]["fleet-3"] = {"vehicles": [VIN, "bad vin"]}
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, tmp_path)
    messages = [p.message for p in info.value.problems]
    assert messages == [f"{VIN} is also in fleet {FLEET!r}", "'bad vin' is not a VIN"]


def test_events_stay_with_the_fleet_that_received_them(api: Api) -> None:
    """Issue 18: the events a vehicle sent while in fleet-1 stay fleet-1's to read after it
    moves to fleet-2; what it sends there is fleet-2's; its state follows its current fleet."""
    client, store = api
    mid = _create(client, "/fleets/fleet-1", ADMIN_AUTH)
    other = _create(client, "/fleets/fleet-2", ADMIN_AUTH)
    before = make_event(mid, at=T0)
    ingest_events(store, [before], T0)
    store.put_vehicle(VIN, "fleet-2", T0)
    after = replace(make_event(other, at=T0 + 60), fleet_id="fleet-2")
    ingest_events(store, [after], T0 + 60)

    def ids(path: str, auth: dict[str, str]) -> list[str]:
        answer = client.get(path, headers=auth)
        assert answer.status_code == 200, answer.text
        return [e["eventId"] for e in answer.json()["_embedded"]["events"]]

    assert ids("/fleets/fleet-1/events", READER) == [before.event_id]
    assert ids(f"/monitors/{mid}/events", READER) == [before.event_id]
    assert ids("/fleets/fleet-2/events", ADMIN_AUTH) == [after.event_id]
    assert ids(f"/vehicles/{VIN}/events", ADMIN_AUTH) == [after.event_id, before.event_id]
    for path in (f"/vehicles/{VIN}/events", f"/vehicles/{VIN}", "/fleets/fleet-2/events"):
        assert client.get(path, headers=READER).status_code == 403, path
    assert client.get(f"/monitors/{other}/events", headers=READER).status_code == 404
