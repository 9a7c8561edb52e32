"""Zone triggers: circles by geodesic distance, GeoJSON areas, margins, dwell, quality gate."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.model import FixType
from agent.monitors.engine import MemoryFiredStore
from agent.monitors.fields import Fields, Report
from agent.monitors.zone import ZoneShape, ZoneTrigger, parse_zone
from tests.agent.monitors.monitor_support import T0, FakeCatalog, Rig, fix_at, make_monitor

R = 6_371_008.8


def destination(
    lat: float, lon: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """The point ``distance_m`` away along ``bearing_deg`` on the sphere (reference formula)."""
    p1, l1, b, d = math.radians(lat), math.radians(lon), math.radians(bearing_deg), distance_m / R
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * R * math.asin(math.sqrt(a))


def zone(body: dict[str, Any]) -> ZoneTrigger:
    report = Report()
    trigger = parse_zone("z", Fields(body, "$.zone", report))
    assert report.problems == [] and trigger is not None
    return trigger


def circle(lat: float, lon: float, **extra: Any) -> dict[str, Any]:
    place = {"center": {"latitude": lat, "longitude": lon}}
    place.update({k: v for k, v in extra.items() if k in ("radius", "radiusMeters")})
    body = {"transition": "In", "place": place}
    body.update({k: v for k, v in extra.items() if k not in ("radius", "radiusMeters")})
    return body


@settings(max_examples=300, deadline=None)
@given(
    lat=st.floats(-80, 80),
    lon=st.floats(-179, 179),
    radius=st.floats(5, 50_000),
    bearing=st.floats(0, 360),
    ratio=st.floats(0, 2),
)
def test_circle_containment_matches_a_haversine_reference(
    lat: float, lon: float, radius: float, bearing: float, ratio: float
) -> None:
    plat, plon = destination(lat, lon, bearing, radius * ratio)
    distance = haversine(lat, lon, plat, plon)
    assume(abs(distance - radius) > 1e-6 * radius + 1e-6)
    shape = ZoneShape(zone(circle(lat, lon, radiusMeters=radius)))
    assert shape.inside(fix_at(plat, plon, T0), T0, None) is (distance <= radius)


def square(lat0: float, lon0: float, half_m: float) -> list[list[float]]:
    dlat = math.degrees(half_m / R)
    dlon = math.degrees(half_m / (R * math.cos(math.radians(lat0))))
    return [
        [lon0 - dlon, lat0 - dlat],
        [lon0 + dlon, lat0 - dlat],
        [lon0 + dlon, lat0 + dlat],
        [lon0 - dlon, lat0 + dlat],
        [lon0 - dlon, lat0 - dlat],
    ]


@settings(max_examples=200, deadline=None)
@given(
    lat0=st.floats(-60, 60),
    lon0=st.floats(-170, 170),
    half=st.floats(300, 5_000),
    margin=st.floats(0, 200),
    offset=st.floats(-280, 280),
)
def test_polygon_margin_is_a_hysteresis_band(
    lat0: float, lon0: float, half: float, margin: float, offset: float
) -> None:
    """A point ``offset`` metres north of the northern edge (negative: inside)."""
    body = {
        "transition": "In",
        "place": {"type": "Polygon", "coordinates": [square(lat0, lon0, half)]},
    }
    body["marginMeters"] = margin
    shape = ZoneShape(zone(body))
    edge_lat = lat0 + math.degrees(half / R)
    plat = edge_lat + math.degrees(offset / R)
    signed = math.copysign(haversine(plat, lon0, edge_lat, lon0), offset)
    assume(min(abs(signed), abs(signed - margin), abs(signed + margin)) > 0.5)
    point = fix_at(plat, lon0, T0)
    assert shape.inside(point, T0, None) is (signed <= 0)
    assert shape.inside(point, T0, True) is (signed <= margin)  # inside: leave beyond the margin
    assert shape.inside(point, T0, False) is (signed <= -margin)  # outside: enter margin-deep


def test_polygon_holes_and_multipolygons() -> None:
    outer = square(45.0, 5.0, 1000)
    hole = square(45.0, 5.0, 200)
    poly = {"transition": "In", "place": {"type": "Polygon", "coordinates": [outer, hole]}}
    shape = ZoneShape(zone(poly))
    assert shape.inside(fix_at(45.0, 5.0, T0), T0, None) is False  # in the hole
    north = destination(45.0, 5.0, 0, 600)
    assert shape.inside(fix_at(*north, T0), T0, None) is True
    multi = {
        "transition": "In",
        "place": {
            "type": "Feature",
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": [[square(45.0, 5.0, 100)], [square(46.0, 6.0, 100)]],
            },
        },
    }
    shape = ZoneShape(zone(multi))
    assert shape.inside(fix_at(46.0, 6.0, T0), T0, None) is True
    assert shape.inside(fix_at(45.5, 5.5, T0), T0, None) is False


def test_bad_places_are_reported() -> None:
    report = Report()
    bow = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    parse_zone(
        "z",
        Fields(
            {"transition": "In", "place": {"type": "Polygon", "coordinates": [bow]}}, "$.z", report
        ),
    )
    parse_zone(
        "z",
        Fields(
            {"transition": "In", "place": {"type": "Point", "coordinates": [1, 2]}}, "$.y", report
        ),
    )
    parse_zone("z", Fields(circle(95.0, 0.0, radius=1), "$.x", report))
    paths = [p.path for p in report.problems]
    assert paths == ["$.z.place.coordinates", "$.y.place.type", "$.x.place.center.latitude"]


def test_quality_gate_makes_the_position_unknown() -> None:
    shape = ZoneShape(
        zone(circle(45.0, 5.0, radius=1, maxHdop=2.0, minSatellites=5, maxFixAgeSeconds=5))
    )
    good = fix_at(45.0, 5.0, T0)
    assert shape.inside(good, T0, None) is True
    assert shape.inside(good, T0 + 6, None) is None  # too old
    assert shape.inside(fix_at(45.0, 5.0, T0, hdop=3.0), T0, None) is None
    assert shape.inside(fix_at(45.0, 5.0, T0, satellites=4), T0, None) is None
    assert shape.inside(fix_at(45.0, 5.0, T0, fix_type=FixType.NONE, quality=0), T0, None) is None
    assert shape.inside(fix_at(None, None, T0), T0, None) is None  # type: ignore[arg-type]
    assert shape.inside(None, T0, None) is None


def zone_monitor(catalog: FakeCatalog, transition: str = "In", **extra: Any) -> Any:
    body = circle(45.0, 5.0, radiusMeters=500, **extra)
    body["transition"] = transition
    return make_monitor([{"name": "z", "zone": body}], "z", catalog)


def test_entering_and_leaving_fire_in_and_out(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(zone_monitor(catalog))
    far = destination(45.0, 5.0, 90, 2000)
    assert r.fix(fix_at(*far, T0)) == []
    assert len(r.fix(fix_at(45.0, 5.0, T0 + 1))) == 1
    assert r.fix(fix_at(45.0, 5.0, T0 + 2)) == []
    r2 = rig(zone_monitor(catalog, "Out"))
    assert r2.fix(fix_at(45.0, 5.0, T0)) == []
    assert len(r2.fix(fix_at(*far, T0 + 1))) == 1


def test_margin_stops_flapping_on_the_edge(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(zone_monitor(catalog, marginMeters=50))
    inside, edge_in, edge_out = (destination(45.0, 5.0, 0, d) for d in (300, 480, 520))
    assert len(r.fix(fix_at(*inside, T0))) == 1
    for i, point in enumerate([edge_out, edge_in, edge_out, edge_in]):  # GPS jitter at the edge
        assert r.fix(fix_at(*point, T0 + 1 + i)) == []
    assert r.engine.runtime("m1").fired is True  # never re-armed inside the band
    r.fix(fix_at(*destination(45.0, 5.0, 0, 600), T0 + 10))
    assert r.engine.runtime("m1").fired is False


def test_dwell_fires_after_the_minimum_time_inside(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(zone_monitor(catalog, minDwellSeconds=30, maxFixAgeSeconds=100))
    far = destination(45.0, 5.0, 90, 2000)
    r.fix(fix_at(*far, T0))
    r.fix(fix_at(45.0, 5.0, T0 + 10))
    assert r.fix(fix_at(*far, T0 + 25)) == []  # left before the dwell: nothing
    r.fix(fix_at(45.0, 5.0, T0 + 30))
    fired = r.advance(T0 + 100)
    assert [e.event_date.timestamp() for e in fired] == [T0 + 60]


def test_restart_inside_a_dwell_zone_sends_no_duplicate(catalog: FakeCatalog) -> None:
    store = MemoryFiredStore()
    first = Rig(catalog, store).add(zone_monitor(catalog, minDwellSeconds=30, maxFixAgeSeconds=100))
    first.fix(fix_at(*destination(45.0, 5.0, 90, 2000), T0))
    first.fix(fix_at(45.0, 5.0, T0 + 1))
    assert len(first.advance(T0 + 40)) == 1
    second = Rig(catalog, store).add(
        zone_monitor(catalog, minDwellSeconds=30, maxFixAgeSeconds=100)
    )
    second.fix(fix_at(45.0, 5.0, T0 + 50))
    assert second.advance(T0 + 120) == []
    assert second.engine.runtime("m1").truth is True


def test_bad_fix_neither_fires_nor_rearms(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(zone_monitor(catalog, maxHdop=5))
    assert len(r.fix(fix_at(45.0, 5.0, T0))) == 1
    far = destination(45.0, 5.0, 90, 2000)
    assert r.fix(fix_at(*far, T0 + 1, hdop=20)) == []  # a bad fix far away: unknown
    assert r.engine.runtime("m1").fired is True
    assert r.fix(fix_at(45.0, 5.0, T0 + 2)) == []
