"""The per-name trigger index must never change what fires: indexed vs look-at-everything."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.monitors.index import NameIndex
from tests.agent.monitors.monitor_support import (
    T0,
    FakeCatalog,
    Rig,
    data,
    default_infos,
    make_monitor,
)

OIL = "vehicle.engines.thermic.oil.temp"
CHARGING = "vehicle.energy.charging.status"
STATUSES = ["Disconnected", "InProgress", "Failure", "Stopped", "Finished"]

numeric_triggers = st.one_of(
    st.builds(
        lambda op, t, h: data("t", OIL, op, str(t), **({"hysteresis": h} if h else {})),
        st.sampled_from(["greaterThan", "greaterOrEqual", "lowerThan", "lowerOrEqual"]),
        st.integers(0, 6),
        st.sampled_from([0, 0, 1, 3]),
    ),
    st.builds(
        lambda a, b, h: data(
            "t", OIL, "between", str(min(a, b)), str(max(a, b)), **({"hysteresis": h} if h else {})
        ),
        st.integers(0, 6),
        st.integers(0, 6),
        st.sampled_from([0, 2]),
    ),
    st.builds(lambda t: data("t", OIL, "equalsTo", str(t)), st.integers(0, 6)),
    st.builds(lambda t: data("t", OIL, "notEqualTo", str(t)), st.integers(0, 6)),
    st.builds(
        lambda ts: data("t", OIL, "includedIn", *map(str, ts)),
        st.lists(st.integers(0, 6), min_size=1, max_size=3),
    ),
)
enum_triggers = st.one_of(
    st.builds(lambda v: data("c", CHARGING, "equalsTo", v), st.sampled_from(STATUSES)),
    st.builds(lambda v: data("c", CHARGING, "notEqualTo", v), st.sampled_from(STATUSES)),
    st.builds(
        lambda vs: data("c", CHARGING, "includedIn", *vs),
        st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3),
    ),
)


VALUES_OIL = st.tuples(st.just(OIL), st.integers(-4, 16).map(lambda v: v / 2))
VALUES_CHARGING = st.tuples(st.just(CHARGING), st.sampled_from(STATUSES))


def unindexed(rig: Rig) -> Rig:
    """Make every index hand out all its triggers (the reference behaviour)."""

    def everything(index: NameIndex) -> Any:
        def affected(value: Any) -> list[Any]:
            index.last = value
            return index.entries

        return affected

    for index in rig.engine._index.values():
        index.affected = everything(index)  # type: ignore[method-assign]
    return rig


def fired(rig: Rig) -> list[tuple[str, bool, float]]:
    return [(e.monitor_id, e.refresh, e.event_date.timestamp()) for e in rig.events]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(numeric_triggers, min_size=1, max_size=6),
    st.lists(enum_triggers, min_size=0, max_size=3),
    st.lists(st.integers(-4, 16).map(lambda v: v / 2), min_size=8, max_size=40),
    st.lists(st.sampled_from(STATUSES), min_size=1, max_size=10),
)
@example(
    [data("t", OIL, "greaterThan", "5", hysteresis=3)], [], [10.0, 4.0, 1.0, 10.0], ["Failure"]
)
@example([data("t", OIL, "lowerThan", "5", hysteresis=3)], [], [1.0, 6.0, 9.0, 1.0], ["Failure"])
def test_indexed_engine_fires_exactly_like_a_full_look(
    numeric: list[dict[str, Any]],
    discrete: list[dict[str, Any]],
    oil: list[float],
    statuses: list[str],
) -> None:
    every = max(1, len(oil) // len(statuses))
    values: list[tuple[str, Any]] = []
    for i, value in enumerate(oil):
        values.append((OIL, value))
        if i % every == 0 and statuses:
            values.append((CHARGING, statuses.pop(0)))
    catalog = FakeCatalog(default_infos())
    monitors = [make_monitor([t], "t", catalog, monitor_id=f"n{i}") for i, t in enumerate(numeric)]
    monitors += [
        make_monitor([t], "c", catalog, monitor_id=f"e{i}") for i, t in enumerate(discrete)
    ]
    both = [Rig(catalog), Rig(catalog)]
    for rig in both:
        for monitor in monitors:
            rig.add(monitor)
        if rig is both[1]:
            unindexed(rig)
        for step, (name, value) in enumerate(values):
            rig.set(name, value, T0 + step, max_age=None)
    assert fired(both[0]) == fired(both[1])
    truths = [{m.id: rig.engine.runtime(m.id).truths for m in monitors} for rig in both]  # type: ignore[union-attr]
    assert truths[0] == truths[1]
