"""The guard of the vehicles' retained status messages (``admit_status``, issue 18): whatever
arrives, the answer is a ``VehicleStatus``, None (cleared) or an ``IngestError``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.wire import Topics, status_to_json
from backend.config import LimitsConfig
from backend.errors import IngestError
from backend.ingest.guard import admit_status
from backend.store.records import VehicleStatus

TOPICS = Topics()
VIN = "VF3TEST0000000001"
LIMITS = LimitsConfig()


def _admit(payload: bytes, topic: str = TOPICS.status(VIN)) -> VehicleStatus | None:
    return admit_status(TOPICS, topic, payload, LIMITS, 1.0)


def test_an_agents_status_is_reduced_to_what_the_api_shows() -> None:
    payload = status_to_json(
        vin=VIN, online=True, at=datetime(2030, 1, 2, tzinfo=UTC), version="1.2.3", outbox_depth=7
    )
    status = _admit(payload)
    assert status == VehicleStatus(VIN, True, "2030-01-02T00:00:00.000Z", "1.2.3", 7, "system", 1.0)
    assert _admit(b"") is None  # a cleared retained message


@pytest.mark.parametrize(
    ("body", "topic", "reason"),
    [
        ({"online": "yes"}, TOPICS.status(VIN), "bad_status"),
        ({"online": True, "vin": "VF3OTHER000000000"}, TOPICS.status(VIN), "bad_status"),
        ({"online": True}, TOPICS.events(VIN), "bad_status"),
        ({"online": True}, "elsewhere/status", "bad_status"),
        ({"online": True, "pad": "x" * 70_000}, TOPICS.status(VIN), "too_large"),
    ],
)
def test_what_is_refused(body: dict[str, object], topic: str, reason: str) -> None:
    with pytest.raises(IngestError) as refused:
        _admit(json.dumps(body).encode(), topic)
    assert refused.value.reason == reason


def test_odd_fields_are_cut_or_marked() -> None:
    body = {"online": False, "version": "v" * 500, "outboxDepth": True, "clock": 5}
    status = _admit(json.dumps(body).encode())
    assert status is not None
    assert len(status.version) == 64 and status.outbox_depth == -1 and status.clock == "5"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.sampled_from(["online", "vin", "at", "outboxDepth"]), inner)
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_payload_gives_a_status_none_or_an_ingest_error(payload: bytes) -> None:
    try:
        status = _admit(payload)
    except IngestError:
        return
    assert status is None or isinstance(status.online, bool)
