"""Routing: attributes, variables in any case, batching rules, the webhook body."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from backend.delivery.routing import DeliverySpec, route, target_problems, webhook_body
from tests.backend.conftest import make_event


def _spec(*attributes: tuple[str, str, str], batch: int | None = 5) -> DeliverySpec:
    return DeliverySpec("cb", "https://hooks.example/in?k=1", attributes, batch_size=batch)


def test_variables_are_substituted_in_any_case() -> None:
    spec = _spec(
        ("Header", "X-Vehicle", "$VIN"),
        ("Header", "X-Monitor", "id=$monitorid"),
        ("Body", "fleet", "$FleetID"),
        ("Query", "m", "$MonitorID"),
    )
    r = route(spec, monitor_id="m1", vin="VIN1", fleet_id="F1")
    assert dict(r.headers) == {"X-Vehicle": "VIN1", "X-Monitor": "id=m1"}
    assert r.body_attributes == (("fleet", "F1"),)
    assert parse_qs(urlsplit(r.url).query) == {"k": ["1"], "m": ["m1"]}
    assert r.endpoint == "https://hooks.example:443"
    assert r.batch_size == 5


def test_query_vin_disables_batching_but_header_vin_does_not() -> None:
    assert (
        route(_spec(("Query", "v", "$Vin")), monitor_id="m", vin="A", fleet_id=None).batch_size == 1
    )
    by_header = route(_spec(("Header", "X-V", "$vin")), monitor_id="m", vin="A", fleet_id=None)
    assert by_header.batch_size == 5
    other = route(_spec(("Header", "X-V", "$vin")), monitor_id="m", vin="B", fleet_id=None)
    assert other.batch_key != by_header.batch_key  # different headers: different requests


def test_webhook_body_has_the_stellantis_shape() -> None:
    event = make_event("m1")
    from backend.delivery.routing import webhook_event

    body = json.loads(webhook_body("m1", [("k", "v")], [json.dumps(webhook_event(event))] * 2))
    assert body["monitorId"] == "m1"
    assert body["attributes"] == [{"key": "k", "value": "v"}]
    assert len(body["events"]) == 2
    first = body["events"][0]
    assert set(first) == {"fleetId", "vin", "eventDate", "values", "extensions", "refresh"}
    assert first["values"][0] == {
        "data": "vehicle.engines.thermic.oil.temp",
        "value": {"type": "string", "body": {"literalValue": "131"}},
        "previous": "129",
    }
    assert first["extensions"][0]["type"] == "vehicle.position"


def test_targets_must_be_https_unless_switched_on() -> None:
    spec = DeliverySpec(
        "cb",
        "http://hooks.example/in",
        (("Header", "bad header", "x"), ("Header", "X-Ok", "a\r\nX-Evil: 1")),
    )
    problems = target_problems(spec, False, "$.cb")
    assert [p.path for p in problems] == [
        "$.cb.target",
        "$.cb.attributes[0].key",
        "$.cb.attributes[1].value",
    ]
    assert len(target_problems(spec, True, "$.cb")) == 2
