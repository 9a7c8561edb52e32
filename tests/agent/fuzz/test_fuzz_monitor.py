"""Fuzz: monitor JSON through the shared parser (agent and backend) and the agent's monitor sync.

Valid definitions with one value replaced by anything JSON can hold, JSON text with bytes
flipped, and arbitrary text. ``parse_monitor`` never raises (it returns problems);
``load_monitor_json`` raises only ``MonitorError``; monitor sync always answers with a state.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from agent.can.dbc import demo_buses, load_vehicle
from agent.errors import MonitorError
from agent.monitors.limits import MAX_TRIGGERS, load_monitor_json
from agent.monitors.model import parse_monitor
from agent.uplink.monitor_sync import MonitorSync
from agent.wire import Topics
from tests.agent.fuzz.fuzz_support import FUZZ_SETTINGS, files_in, peak_memory
from tests.agent.monitors.test_monitors_model import HEATWAVE
from tests.agent.uplink.test_uplink_monitor_sync import RecordingEngine

CATALOG = load_vehicle(demo_buses()).catalog
TOPICS = Topics()
VIN = "VF3FUZZ0000000001"

POLYGON = {
    "label": "depot",
    "triggerParam": {
        "triggers": [
            {
                "name": "depot",
                "zone": {
                    "transition": "In",
                    "marginMeters": 5,
                    "place": {
                        "type": "Feature",
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[2.0, 48.0], [2.1, 48.0], [2.1, 48.1], [2.0, 48.0]]],
                        },
                    },
                },
            },
            {
                "name": "oil",
                "data": {
                    "data": "vehicle.engines.thermic.oil.temp",
                    "op": "between",
                    "value": ["90", "130"],
                    "minDurationSeconds": 3,
                },
            },
        ],
        "boolExp": "depot & !oil",
    },
}
V2 = {
    "label": "legacy",
    "triggerParam": {
        "timeZoneTriggers": {
            "timeTrigger": {
                "timeZone": "UTC",
                "times": [{"recurrence": "None", "start": "2026-01-01T00:00:00Z"}],
            }
        },
        "dataTriggers": [{"data": "vehicle.engines.running", "op": "equalsTo", "value": ["true"]}],
    },
}
WRAPPED = {"monitorId": "w-1", "status": "Paused", "monitor": copy.deepcopy(HEATWAVE)}
SEEDS: list[dict[str, Any]] = [HEATWAVE, POLYGON, V2, WRAPPED]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", "Europe", "PT-1H", "w99", "$Vin", "((", "a|!a", "nan", "1e999"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=25,
)


def _paths(obj: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _paths(value, (*prefix, index))
    return found


def _replace(obj: Any, path: tuple[object, ...], value: object) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    holder = out
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return out


@st.composite
def mutated(draw: st.DrawFn) -> object:
    seed = draw(st.sampled_from(SEEDS))
    path = draw(st.sampled_from(_paths(seed)))
    return _replace(seed, path, draw(json_values))


def _sync(sent: list[tuple[str, bytes]]) -> MonitorSync:
    return MonitorSync(
        VIN,
        "fleet-1",
        TOPICS,
        catalog=CATALOG,
        engine=RecordingEngine(),
        publish=lambda t, p: sent.append((t, p)),
        clock=lambda: 0.0,
    )


def check_parse(obj: object) -> None:
    for catalog in (None, CATALOG):
        parsed = parse_monitor(obj, catalog=catalog)
        assert parsed.ok == (parsed.monitor is not None)
        if parsed.monitor is not None:
            assert 1 <= len(parsed.monitor.triggers) <= MAX_TRIGGERS
        else:
            assert parsed.problems


def check_pushed(payload: bytes) -> None:
    sent: list[tuple[str, bytes]] = []
    sync = _sync(sent)
    sync.on_message(TOPICS.vehicle_monitor(VIN, "m1"), payload)
    state = json.loads(sent[-1][1])
    assert state["state"] in ("applied", "rejected")
    assert sync.counters["internal_errors"] == 0


def test_seeds_are_valid() -> None:
    for seed in SEEDS:
        assert parse_monitor(seed).ok, seed


@FUZZ_SETTINGS
@given(mutated())
@example(_replace(HEATWAVE, ("triggerParam", "boolExp"), "(" * 5000 + "paris"))
@example(_replace(POLYGON, ("triggerParam", "triggers", 0, "zone", "place", "geometry"), []))
def test_mutated_definitions_give_problems_not_exceptions(obj: object) -> None:
    check_parse(obj)
    check_pushed(json.dumps(obj).encode("utf-8", "surrogatepass"))


@FUZZ_SETTINGS
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3))))
def test_flipped_bytes_give_monitor_errors(seed: object, edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(json.dumps(seed).encode())
    for position, chunk in edits:
        at = position % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    try:
        obj = load_monitor_json(bytes(data))
    except MonitorError as exc:
        assert exc.problems
    else:
        check_parse(obj)
    check_pushed(bytes(data))


@FUZZ_SETTINGS
@given(st.text(alphabet='[]{}",:0123456789.eE-tfnul \\ud', max_size=200) | st.binary(max_size=200))
def test_arbitrary_text_gives_monitor_errors(text: str | bytes) -> None:
    try:
        load_monitor_json(text)
    except MonitorError as exc:
        assert exc.problems


def test_regression_definitions_are_rejected_with_reasons() -> None:
    cases = files_in("monitors")
    assert cases
    for path in cases:
        data = path.read_bytes()
        sent: list[tuple[str, bytes]] = []
        sync = _sync(sent)
        assert not sync.on_message(TOPICS.vehicle_monitor(VIN, path.stem), data), path.name
        state = json.loads(sent[-1][1])
        assert state["state"] == "rejected" and state["reasons"], path.name
        assert sync.counters["internal_errors"] == 0


def test_memory_stays_bounded_on_the_largest_hostile_inputs() -> None:
    for path in files_in("monitors"):
        with peak_memory() as peak:
            check_pushed(path.read_bytes())
        assert peak() < 64 * 1024 * 1024, path.name
