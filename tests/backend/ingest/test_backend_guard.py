"""The guard every outside JSON passes (``backend.ingest.guard``): each refusal has its reason, the
depth scan agrees with the parser, and fuzzed events and state reports (as they arrive over MQTT)
are either accepted, routed and stored, or refused with a documented reason; never anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.wire import Topics, event_to_json
from backend.config import LimitsConfig
from backend.errors import IngestError, PayloadError
from backend.ingest.guard import (
    EVENT_REASONS,
    PAYLOAD_REASONS,
    admit_event,
    admit_state,
    decode_json,
    json_depth,
    truncated,
)
from backend.ingest.intake import EventIntake
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import VIN, add_monitor, make_event, monitor_definition
from tests.conftest import DATA

TOPICS = Topics()
LIMITS = LimitsConfig()
FUZZ = DATA / "fuzz" / "mqtt"
CASES = sorted(FUZZ.glob("*.json"))
STATE_TOPIC = TOPICS.monitor_state(VIN, "m-known")
STATE_REASONS = PAYLOAD_REASONS | {"bad_monitor_state"}
FUZZ_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _decode(raw: bytes, **limits: Any) -> Any:
    chosen = LimitsConfig(**limits)
    return decode_json(raw, max_bytes=chosen.max_event_bytes, limits=chosen)


def _reason(raw: bytes, **limits: Any) -> str:
    with pytest.raises(PayloadError) as info:
        _decode(raw, **limits)
    return info.value.reason


# -- decode_json: one reason per refusal ------------------------------------------------------


def test_each_refusal_names_its_reason() -> None:
    assert _reason(b"[1]", max_event_bytes=2) == "too_large"
    assert _reason(b'"\xff"') == "not_utf8"
    assert _reason(b"{") == "not_json"
    assert _reason(b"[" * 33 + b"]" * 33) == "too_deep"
    assert _reason(b"1" * 41) == "number_too_long"
    assert _reason(b"-0." + b"1" * 39) == "number_too_long"
    assert _reason(b"1e400") == "number_out_of_range"
    assert _reason(b"[Infinity]") == "number_out_of_range"
    assert _reason(b'{"a": "\\ud800"}') == "bad_unicode"
    assert _reason(b'{"\\udc00": 1}') == "bad_unicode"


def test_what_is_within_the_limits_decodes() -> None:
    assert _decode(b"[" * 32 + b"]" * 32) is not None
    assert _decode(b"1" * 40) == int("1" * 40)
    assert _decode(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate *pair* is a character
    assert _decode(b'{"a": "[[[[[[", "b": "\\"{{{{"}', max_json_depth=1) == {
        "a": "[[[[[[",
        "b": '"{{{{',
    }


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def _reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_reference_depth, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=_JSON)
@example(value={'"[': ['\\"', {"}": []}]})
def test_the_depth_scan_agrees_with_the_structure(value: Any) -> None:
    text = json.dumps(value)
    assert json_depth(text) == _reference_depth(value)


def test_log_text_is_cut_and_printable() -> None:
    line = truncated("\n\x1b[31m" + "x" * 1000)
    assert len(line) < 400 and "\n" not in line and "\x1b" not in line


# -- the kept cases (tests/data/fuzz/mqtt) ----------------------------------------------------


def test_the_kept_cases_are_there() -> None:
    assert len(CASES) >= 10  # the directory was not lost or renamed


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_a_kept_event_case_is_refused_with_its_reason(path: Path) -> None:
    expected = path.stem.split("--")[0]
    with pytest.raises(IngestError) as info:
        admit_event(TOPICS, TOPICS.events(VIN), path.read_bytes(), LIMITS)
    assert info.value.reason == expected


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_a_kept_state_case_is_refused_with_its_reason(path: Path) -> None:
    expected = path.stem.split("--")[0]
    with pytest.raises(IngestError) as info:
        admit_state(TOPICS, STATE_TOPIC, path.read_bytes(), LIMITS)
    assert info.value.reason == (expected if expected in PAYLOAD_REASONS else "bad_monitor_state")


# -- fuzzing events as they arrive over MQTT, through to the store -----------------------------

_VALID = event_to_json(make_event("m-known"))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid event with a few bytes replaced, inserted or deleted."""
    data = bytearray(_VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.sampled_from(b'[]{}",:\\0123456789eE.-+ \xff\xc3\x80ux'))
        if kind == "insert" or at == len(data):
            data.insert(at, byte)
        elif kind == "replace":
            data[at] = byte
        else:
            del data[at]
    return bytes(data)


_FRAGMENTS = (  # raw JSON text, so that depth and number length are not capped by json.dumps
    _JSON.map(json.dumps)
    | st.integers(1, 6000).map(lambda n: "[" * n + "]" * n)
    | st.integers(1, 6000).map(lambda n: "9" * n)
    | st.integers(1, 500).map(lambda n: "0." + "1" * n)
    | st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1e308", "-0.0"])
    | st.text(st.characters(categories=["Cs", "Co", "Cc", "Lo"]), max_size=20).map(json.dumps)
)
_FIELDS = ["eventId", "seq", "vin", "fleetId", "monitorId", "eventDate", "refresh", "values",
           "extensions", "labels", "schema"]  # fmt: skip
_HOLE = "__hole__"
_DATES = st.builds(  # RFC 3339 text, any year, any offset: some fall outside 1-9999 in UTC
    lambda moment, minutes: (
        moment.isoformat() + f"{'+-'[minutes < 0]}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"
    ),
    st.datetimes(),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)


@st.composite
def _replaced(draw: st.DrawFn) -> bytes:
    """A valid event with one field (or a value inside one) replaced by hostile JSON text."""
    obj = json.loads(_VALID)
    field = draw(st.sampled_from(_FIELDS))
    if field == "values" and draw(st.booleans()):
        obj["values"][0]["value"]["body"]["literalValue"] = _HOLE
    elif field == "extensions" and draw(st.booleans()):
        obj["extensions"][0]["body"]["latitude"] = _HOLE
    elif field == "eventDate" and draw(st.booleans()):
        obj["eventDate"] = draw(_DATES)
        return json.dumps(obj).encode()
    else:
        obj[field] = _HOLE
    return json.dumps(obj).replace(f'"{_HOLE}"', draw(_FRAGMENTS)).encode()


_EVENTS = st.binary(max_size=600) | _mutated() | _replaced()


@FUZZ_SETTINGS
@given(payload=_EVENTS)
@example(payload=(FUZZ / "malformed--date-before-year-1-in-utc.json").read_bytes())
@example(payload=_VALID.replace(b'"m-known"', b'"m-known\\u0000"'))
def test_a_fuzzed_event_is_stored_or_refused_with_a_documented_reason(
    store: SqliteStore, payload: bytes
) -> None:
    if store.get_monitor("m-known") is None:
        add_monitor(store, monitor_definition("https://h.example/in"), monitor_id="m-known")
    intake = EventIntake(store, TOPICS, LIMITS)
    try:
        prepared = intake.prepare(TOPICS.events(VIN), payload)
    except IngestError as exc:
        assert exc.reason in EVENT_REASONS | {"unknown_monitor", "fleet_mismatch"}, exc
        return
    (fresh,) = store.commit_events([prepared], 1.0)  # the store takes whatever was admitted
    assert isinstance(fresh, bool)
    json.loads(prepared.webhook_json)  # and the webhook body is JSON a customer can parse


# -- fuzzing retained monitor-state reports ---------------------------------------------------

_STATE = json.dumps({"state": "rejected", "reasons": [{"path": "$", "message": "m"}], "hash": "h"})


@st.composite
def _states(draw: st.DrawFn) -> bytes:
    obj = json.loads(_STATE)
    key = draw(st.sampled_from(["state", "reasons", "hash", "at", "extra"]))
    obj[key] = _HOLE
    fragment = draw(_FRAGMENTS)
    if draw(st.booleans()):
        fragment = f'[{fragment}, {{"path": {fragment}}}]'
    return json.dumps(obj).replace(f'"{_HOLE}"', fragment).encode()


@FUZZ_SETTINGS
@given(payload=st.binary(max_size=400) | _states(), topic=st.sampled_from([STATE_TOPIC, "x/y"]))
def test_a_fuzzed_state_report_is_stored_or_refused_with_a_documented_reason(
    store: SqliteStore, payload: bytes, topic: str
) -> None:
    try:
        state = admit_state(TOPICS, topic, payload, LIMITS)
    except IngestError as exc:
        assert exc.reason in STATE_REASONS, exc
        return
    if state is not None:
        store.set_vehicle_state(state)
        assert [s.monitor_id for s in store.vehicle_states("m-known")] == ["m-known"]
