"""Geodesy for zone triggers: haversine distance for circles, local metric projection for areas.

Pure. Circles use the haversine great-circle distance on a sphere of the mean Earth radius
(error under 0.5 % against the ellipsoid, i.e. 5 m on a 1 km circle). GeoJSON areas (lon/lat,
holes, multipolygons) are projected once onto a local equirectangular plane centred on the
area, in metres, where containment uses shapely prepared geometries and the edge margin is a
buffer: exact enough for zones up to a few tens of kilometres across.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class LocalPlane:
    """Equirectangular projection around (lat0, lon0): metres east and north."""

    lat0: float
    lon0: float

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        k = math.pi / 180 * EARTH_RADIUS_M
        dlon = (lon - self.lon0 + 540.0) % 360.0 - 180.0
        return dlon * k * math.cos(math.radians(self.lat0)), (lat - self.lat0) * k


class ProjectedArea:
    """A lon/lat polygon or multipolygon, projected to metres, with margin bands prepared."""

    def __init__(self, geometry: BaseGeometry, margin_m: float = 0.0) -> None:
        centroid = geometry.centroid
        self.plane = LocalPlane(centroid.y, centroid.x)
        plane = self.plane

        k = math.pi / 180 * EARTH_RADIUS_M
        cos0 = math.cos(math.radians(plane.lat0))

        def to_metres(coords: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            x = ((coords[:, 0] - plane.lon0 + 540.0) % 360.0 - 180.0) * k * cos0
            y = (coords[:, 1] - plane.lat0) * k
            return np.column_stack((x, y))

        self.metric = shapely.transform(geometry, to_metres)
        self.margin_m = margin_m
        self.exact = self.metric
        self.inner = self.metric.buffer(-margin_m) if margin_m > 1e-3 else self.metric
        self.outer = self.metric.buffer(margin_m) if margin_m > 1e-3 else self.metric
        for geom in {id(g): g for g in (self.exact, self.inner, self.outer)}.values():
            shapely.prepare(geom)

    def point(self, lat: float, lon: float) -> BaseGeometry:
        x, y = self.plane.project(lat, lon)
        return shapely.Point(x, y)

    def contains(self, lat: float, lon: float, band: str = "exact") -> bool:
        """Inside the area (``exact``), inside by at least the margin (``inner``), or not
        beyond the margin outside (``outer``). Points on the boundary count as inside."""
        geom = {"exact": self.exact, "inner": self.inner, "outer": self.outer}[band]
        return bool(geom.intersects(self.point(lat, lon)))

    def distance_to_boundary_m(self, lat: float, lon: float) -> float:
        return float(self.metric.boundary.distance(self.point(lat, lon)))


def decide_inside(
    *,
    inside_exact: bool,
    inside_inner: bool,
    inside_outer: bool,
    was_inside: bool | None,
) -> bool:
    """Hysteresis: once inside, leave only beyond the outer band; once outside, enter only
    within the inner band; with no earlier decision, the exact boundary decides."""
    if was_inside is None:
        return inside_exact
    return inside_outer if was_inside else inside_inner
