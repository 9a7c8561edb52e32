"""Zone triggers: definition, parsing, and the position test with margin and quality gate.

Stellantis gives circles only (``place`` or, in the docs, ``circle``: ``radius`` in km and a
``center``). Extensions (SPEC §2): ``radiusMeters``; a GeoJSON ``Polygon``/``MultiPolygon``
(or a ``Feature`` holding one; lon/lat order, holes allowed) as the place; ``marginMeters``
(hysteresis at the edge); ``minDwellSeconds``; and a fix-quality gate (``requireFix``,
``maxHdop``, ``minSatellites``, ``maxFixAgeSeconds``): a position failing the gate is unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import shapely.geometry
from shapely.errors import ShapelyError
from shapely.geometry.base import BaseGeometry

from agent.instants import older_than
from agent.model import Fix, FixType
from agent.monitors.fields import Fields
from agent.monitors.geo import ProjectedArea, decide_inside, haversine_m

DEFAULT_MAX_FIX_AGE_S = 10.0
_GEOJSON_TYPES = ("Polygon", "MultiPolygon")


@dataclass(frozen=True, slots=True)
class Circle:
    latitude: float
    longitude: float
    radius_m: float


@dataclass(frozen=True, slots=True)
class Area:
    """A GeoJSON polygon or multipolygon (lon/lat) as a shapely geometry."""

    geometry: BaseGeometry = field(compare=False)
    geojson: str  # canonical text, for equality and hashing


@dataclass(frozen=True, slots=True)
class FixGate:
    require_fix: bool = True
    max_hdop: float | None = None
    min_satellites: int | None = None
    max_fix_age_s: float = DEFAULT_MAX_FIX_AGE_S

    def passes(self, fix: Fix | None, now: float) -> bool:
        if fix is None or not fix.has_position:
            return False
        if older_than(now, fix.timestamp, self.max_fix_age_s):
            return False
        if self.require_fix and fix.fix_type is FixType.NONE and fix.quality == 0:
            return False
        if self.max_hdop is not None and (fix.hdop is None or fix.hdop > self.max_hdop):
            return False
        return self.min_satellites is None or (
            fix.satellites is not None and fix.satellites >= self.min_satellites
        )


@dataclass(frozen=True, slots=True)
class ZoneTrigger:
    name: str
    transition: str  # "In" (inside) | "Out" (outside)
    place: Circle | Area
    margin_m: float = 0.0
    min_dwell_s: float = 0.0
    gate: FixGate = FixGate()


_ZONE_KEYS = {
    "transition",
    "place",
    "circle",
    "polygon",
    "marginMeters",
    "minDwellSeconds",
    "requireFix",
    "maxHdop",
    "minSatellites",
    "maxFixAgeSeconds",
}


def parse_zone(name: str, fields: Fields) -> ZoneTrigger | None:
    report = fields.report
    before = len(report.problems)
    fields.unknown(_ZONE_KEYS)
    transition = fields.string("transition", required=True)
    if transition is not None and transition not in ("In", "Out"):
        report.problem(fields.at("transition"), f"must be In or Out, got {transition!r}")
    place = _parse_place(fields)
    margin = fields.number("marginMeters", minimum=0.0) or 0.0
    dwell = fields.number("minDwellSeconds", minimum=0.0) or 0.0
    max_age = fields.number("maxFixAgeSeconds", minimum=0.0)
    gate = FixGate(
        require_fix=fields.boolean("requireFix", default=True),
        max_hdop=fields.number("maxHdop", minimum=0.0),
        min_satellites=fields.integer("minSatellites", minimum=0),
        max_fix_age_s=DEFAULT_MAX_FIX_AGE_S if max_age is None else max_age,
    )
    if isinstance(place, Circle) and margin >= place.radius_m:
        report.problem(fields.at("marginMeters"), "must be smaller than the circle's radius")
    if len(report.problems) > before or place is None or transition is None:
        return None
    return ZoneTrigger(name, transition, place, margin, dwell, gate)


def _parse_place(fields: Fields) -> Circle | Area | None:
    found = fields.find("place", "circle", "polygon")
    if found is None:
        fields.report.problem(fields.at("place"), "is required")
        return None
    key, value = found
    place = Fields.of(value, fields.at(key), fields.report)
    if place is None:
        return None
    if "type" in place.obj:
        return _parse_geojson(place)
    return _parse_circle(place)


def _parse_circle(place: Fields) -> Circle | None:
    report = place.report
    place.unknown({"radius", "radiusMeters", "center"})
    if place.has("radiusMeters"):
        radius_m = place.number("radiusMeters", minimum=0.0)
    else:
        radius_km = place.number("radius", required=True, minimum=0.0)
        radius_m = None if radius_km is None else radius_km * 1000.0
    if radius_m == 0.0:
        report.problem(place.at("radius"), "must be greater than 0")
        radius_m = None
    center = place.child("center", required=True)
    lat = lon = None
    if center is not None:
        center.unknown({"latitude", "longitude"})
        lat = center.number("latitude", required=True)
        lon = center.number("longitude", required=True)
        if lat is not None and not -90.0 <= lat <= 90.0:
            report.problem(center.at("latitude"), "must be within -90..90")
            lat = None
        if lon is not None and not -180.0 <= lon <= 180.0:
            report.problem(center.at("longitude"), "must be within -180..180")
            lon = None
    if radius_m is None or lat is None or lon is None:
        return None
    return Circle(lat, lon, radius_m)


def _parse_geojson(place: Fields) -> Area | None:
    obj = dict(place.obj)
    path = place.path
    if obj.get("type") == "Feature":
        geometry = obj.get("geometry")
        if not isinstance(geometry, dict):
            place.report.problem(place.at("geometry"), "a Feature needs a geometry object")
            return None
        obj, path = geometry, place.at("geometry")
    if obj.get("type") not in _GEOJSON_TYPES:
        place.report.problem(f"{path}.type", "must be Polygon or MultiPolygon (GeoJSON)")
        return None
    try:
        geometry_obj = shapely.geometry.shape(obj)
    except (ShapelyError, ValueError, TypeError, KeyError, IndexError) as exc:
        place.report.problem(f"{path}.coordinates", f"not valid GeoJSON coordinates: {exc}")
        return None
    minx, miny, maxx, maxy = geometry_obj.bounds
    if geometry_obj.is_empty or not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        place.report.problem(f"{path}.coordinates", "must be [longitude, latitude] pairs")
        return None
    if not geometry_obj.is_valid:
        reason = shapely.is_valid_reason(geometry_obj)
        place.report.problem(f"{path}.coordinates", f"invalid polygon: {reason}")
        return None
    return Area(geometry_obj, json.dumps(obj, sort_keys=True, separators=(",", ":")))


class ZoneShape:
    """The compiled position test of one zone trigger: is the fix inside (three-valued)?"""

    def __init__(self, trigger: ZoneTrigger) -> None:
        self.trigger = trigger
        place = trigger.place
        self._area = (
            ProjectedArea(place.geometry, trigger.margin_m) if isinstance(place, Area) else None
        )

    def inside(self, fix: Fix | None, now: float, was_inside: bool | None) -> bool | None:
        """True inside, False outside, None when the fix fails the quality gate."""
        trigger = self.trigger
        if not trigger.gate.passes(fix, now):
            return None
        assert fix is not None and fix.latitude is not None and fix.longitude is not None
        lat, lon = fix.latitude, fix.longitude
        if self._area is not None:
            area = self._area
            return decide_inside(
                inside_exact=area.contains(lat, lon, "exact"),
                inside_inner=area.contains(lat, lon, "inner"),
                inside_outer=area.contains(lat, lon, "outer"),
                was_inside=was_inside,
            )
        place = trigger.place
        assert isinstance(place, Circle)
        distance = haversine_m(place.latitude, place.longitude, lat, lon)
        margin = trigger.margin_m
        return decide_inside(
            inside_exact=distance <= place.radius_m,
            inside_inner=distance <= place.radius_m - margin,
            inside_outer=distance <= place.radius_m + margin,
            was_inside=was_inside,
        )
