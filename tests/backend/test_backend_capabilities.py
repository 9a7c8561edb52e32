"""The capability manifest on the wire (agent.wire) and where the backend reads it: built, guarded,
held to its schema; the data names a monitor needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from agent.wire import (
    MAX_CAPABILITY_NAMES,
    Topics,
    WireError,
    capabilities_to_json,
    capability_names,
    monitor_state_to_json,
)
from backend.config import LimitsConfig
from backend.errors import IngestError
from backend.ingest.guard import admit_state
from backend.monitor_channel import needed_names
from tests.e2e.schemas import errors


def test_a_manifest_round_trips() -> None:
    payload = capabilities_to_json(
        vin="VF3X",
        at=datetime(2026, 1, 2, tzinfo=UTC),
        data_names=["obd.engine.rpm", "vehicle.odometer", "obd.engine.rpm"],
        obd={"diag": {"vin": "VF3X", "ecus": ["7E8"], "pids": ["0C", "A6"]}},
    )
    body = json.loads(payload)
    assert errors("capabilities", body) == []  # docs/schemas/capabilities.schema.json
    assert errors("capabilities", {**body, "dataNames": [""]})
    assert body["schema"] == "edgemon.capabilities/1" and body["obd"]["diag"]["ecus"] == ["7E8"]
    assert capability_names(payload) == {"obd.engine.rpm", "vehicle.odometer"}
    assert capability_names(b"") is None  # a cleared manifest


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"schema":"edgemon.status/1","dataNames":[]}',
        b'{"schema":"edgemon.capabilities/1","dataNames":"x"}',
        b'{"schema":"edgemon.capabilities/1","dataNames":[1]}',
        b'{"schema":"edgemon.capabilities/1","dataNames":[""]}',
        json.dumps(
            {"schema": "edgemon.capabilities/1", "dataNames": ["n"] * (MAX_CAPABILITY_NAMES + 1)}
        ).encode(),
        b"[" * 100_000,
        b" " * (600 * 1024),
    ],
)
def test_a_bad_manifest_is_a_wire_error(payload: bytes) -> None:
    with pytest.raises(WireError):
        capability_names(payload)


def test_the_names_a_monitor_needs() -> None:
    definition = {
        "triggerParam": {
            "triggers": [
                {"name": "a", "data": {"data": "obd.fuel.rate", "op": "greaterThan"}},
                {"name": "b", "zone": {}},
                "junk",
            ],
            "boolExp": "a & b",
        }
    }
    assert needed_names(definition) == {"obd.fuel.rate"}
    assert needed_names({"triggerParam": "x"}) == set()


def test_a_monitor_state_carries_its_obd_cost() -> None:
    topics = Topics()
    topic = topics.monitor_state("VF3X", "m1")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    payload = monitor_state_to_json(monitor_id="m1", applied=True, at=at,
                                    obd_requests_per_minute=12.0)  # fmt: skip
    assert errors("monitor-state", json.loads(payload)) == []
    state = admit_state(topics, topic, payload, LimitsConfig())
    assert state is not None and state.obd_requests_per_minute == 12.0
    plain = monitor_state_to_json(monitor_id="m1", applied=True, at=at)
    assert "obdRequestsPerMinute" not in json.loads(plain)
    assert admit_state(topics, topic, plain, LimitsConfig()).obd_requests_per_minute is None  # type: ignore[union-attr]
    for bad in ('"12"', "-1", "601", "true", "[]"):
        body = {**json.loads(plain), "obdRequestsPerMinute": json.loads(bad)}
        with pytest.raises(IngestError) as caught:
            admit_state(topics, topic, json.dumps(body).encode(), LimitsConfig())
        assert caught.value.reason == "bad_monitor_state"
