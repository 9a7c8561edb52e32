"""Cross-fleet injection (issue 12, finding 4) against real processes: mosquitto, one
``edgemon-backend run`` process, two HTTPS receivers (one customer per fleet).

A vehicle of fleet A names fleet B's monitor, with its true fleet, with fleet B's id as its claim,
and with no fleet at all; a vehicle nobody provisioned does the same. None of it reaches B's
receiver; each is counted in ``/metrics``. The same backend still delivers B's own vehicle's event
to B, and A's vehicle's event (fleet left out) to A, each signed with its own fleet's secret,
whatever callback name the monitor's author wrote. Fleet tokens see only their fleet.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, event_to_json
from tests.backend.backend_receiver import CertAuthority, Receiver
from tests.backend.conftest import SECRET, TOKEN, make_event, monitor_definition, publisher
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto

TOPICS = Topics()
VIN_A, VIN_B, STRANGER = "VF3FLEETA00000001", "VF3FLEETB00000001", "VF3NOBODY00000001"
SECRET_A = "whsec_" + base64.b64encode(b"fleet-a-secret-0123456789abcdef!").decode()
SECRET_B = "whsec_" + base64.b64encode(b"fleet-b-secret-0123456789abcdef!").decode()
TOKEN_A, TOKEN_B = "fleet-a-token-0123456789", "fleet-b-token-0123456789"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def backend_process(tmp_path: Path, mosquitto: Mosquitto, test_ca: CertAuthority) -> Iterator[str]:
    config = write_backend_config(
        tmp_path,
        mosquitto,
        client_id="tenancy",
        ca=test_ca,
        scopes=["monitors:read", "admin"],
        tokens=[
            {"token": TOKEN_A, "fleets": ["fleet-a"]},
            {"token": TOKEN_B, "fleets": ["fleet-b"]},
        ],
        allow_networks=["127.0.0.0/8", "::1/128"],
        webhooks={"fleet_secrets": {"fleet-a": SECRET_A, "fleet-b": SECRET_B}},
    )
    with BackendProcess(config, stop_timeout=15) as backend:
        yield backend.url


def _monitor(api: str, token: str, fleet: str, target: str, name: str) -> str:
    attributes = [{"type": "Header", "key": "Authorization", "value": f"Bearer {fleet}-key"}]
    definition = monitor_definition(target, name=name, attributes=attributes)
    created = httpx.post(f"{api}/fleets/{fleet}/monitors", json=definition, headers=_auth(token))
    assert created.status_code == 202, created.text
    return str(created.json()["monitorId"])


def test_a_vehicle_of_fleet_a_gets_nothing_delivered_on_fleet_b(
    backend_process: str, mosquitto: Mosquitto, receivers: Callable[..., Receiver]
) -> None:
    api = backend_process
    rx_a, rx_b = receivers(), receivers()
    for vin, fleet in ((VIN_A, "fleet-a"), (VIN_B, "fleet-b")):
        put = httpx.put(f"{api}/fleets/{fleet}/vehicles/{vin}", headers=_auth(TOKEN))
        assert put.status_code == 201
    assert httpx.put(f"{api}/fleets/fleet-a/vehicles/X1", headers=_auth(TOKEN_A)).status_code == 403
    # B's author names its callback like A's: the name picks no secret any more
    mid_b = _monitor(api, TOKEN_B, "fleet-b", rx_b.url + "/b", name="fleet-a")
    mid_a = _monitor(api, TOKEN_A, "fleet-a", rx_a.url + "/a", name="fleet-b")

    client = publisher(mosquitto)
    try:
        attacks = [
            (VIN_A, "fleet-a"),  # its true fleet, on B's monitor
            (VIN_A, "fleet-b"),  # claims B
            (VIN_A, None),  # no claim (the check used to be skipped)
            (STRANGER, "fleet-b"),  # a vehicle nobody provisioned
        ]
        for vin, claim in attacks:
            event = replace(make_event(mid_b, vin=vin), fleet_id=claim)
            client.publish(TOPICS.events(vin), event_to_json(event), qos=1).wait_for_publish(10)
        own_b = replace(make_event(mid_b, vin=VIN_B, value="b-own"), fleet_id="fleet-b")
        own_a = replace(make_event(mid_a, vin=VIN_A, value="a-own"), fleet_id=None)
        for vin, event in ((VIN_B, own_b), (VIN_A, own_a)):
            client.publish(TOPICS.events(vin), event_to_json(event), qos=1).wait_for_publish(10)
        (to_b,) = rx_b.wait_for(1)
        (to_a,) = rx_a.wait_for(1)
    finally:
        stop_network_loop(client)
        client.disconnect()

    # Ingest commits in arrival order, so the attacks were judged before the controls arrived.
    body_b = Webhook(SECRET_B).verify(to_b.body, to_b.headers)
    assert [e["vin"] for e in body_b["events"]] == [VIN_B]
    assert to_b.headers["authorization"] == "Bearer fleet-b-key"
    body_a = Webhook(SECRET_A).verify(to_a.body, to_a.headers)
    assert body_a["events"][0]["fleetId"] == "fleet-a"  # from the record, not the payload
    for wrong in (SECRET, SECRET_A):
        with pytest.raises(WebhookVerificationError):
            Webhook(wrong).verify(to_b.body, to_b.headers)
    assert len(rx_b.requests) == 1

    metrics = httpx.get(f"{api}/metrics").text
    skipped = "edgemon_ingest_skipped_total{reason="
    assert _metric(metrics, skipped + '"wrong_fleet"}') == 2
    assert _metric(metrics, skipped + '"fleet_mismatch"}') == 1
    assert _metric(metrics, skipped + '"unknown_vehicle"}') == 1

    # Fleet tokens: A sees neither B's monitors nor B's deliveries; B sees its own, masked.
    assert httpx.get(f"{api}/fleets/fleet-b/monitors", headers=_auth(TOKEN_A)).status_code == 403
    foreign = httpx.get(f"{api}/monitors/{mid_b}/deliveries", headers=_auth(TOKEN_A))
    assert foreign.status_code == 404
    own = httpx.get(f"{api}/monitors/{mid_b}/deliveries", headers=_auth(TOKEN_B)).json()
    assert own["total"] == 1
    read = httpx.get(f"{api}/fleets/fleet-b/monitors/{mid_b}", headers=_auth(TOKEN_B)).json()
    (header,) = read["monitor"]["subscribeParam"]["callback"]["webhook"]["attributes"]
    assert header["value"] == "********"
