"""Where the simulated vehicle is at a given second: waypoints, dwell times and leg speeds.

The vehicle waits ``dwell`` seconds at each waypoint, then drives the leg to the next one at the
waypoint's ``speed_kmh`` (constant, great-circle distance, linear interpolation: legs are short).
After the last waypoint it stays parked. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class Waypoint:
    latitude: float
    longitude: float
    speed_kmh: float = 0.0  # on the leg that leaves this waypoint
    dwell: float = 0.0  # seconds stopped here before leaving
    name: str = ""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial course from point 1 to point 2, degrees true in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float
    speed_kmh: float
    course: float  # degrees true; the last known course while stopped
    distance_m: float  # driven since the start


@dataclass(frozen=True, slots=True)
class _Leg:
    depart: float  # seconds after start
    arrive: float
    start: Waypoint
    end: Waypoint
    length_m: float
    distance_before: float
    course: float


class Route:
    def __init__(self, waypoints: Sequence[Waypoint]) -> None:
        if not waypoints:
            raise ValueError("a route needs at least one waypoint")
        self.waypoints = tuple(waypoints)
        self._legs: list[_Leg] = []
        t = 0.0
        driven = 0.0
        for a, b in zip(self.waypoints, self.waypoints[1:], strict=False):
            t += a.dwell
            length = distance_m(a.latitude, a.longitude, b.latitude, b.longitude)
            duration = length / (a.speed_kmh / 3.6)
            course = bearing_deg(a.latitude, a.longitude, b.latitude, b.longitude)
            self._legs.append(_Leg(t, t + duration, a, b, length, driven, course))
            t += duration
            driven += length
        self.end_time = t + self.waypoints[-1].dwell
        self.length_m = driven

    def at(self, t: float) -> Position:
        course = self._legs[0].course if self._legs else 0.0
        first = self.waypoints[0]
        position = Position(first.latitude, first.longitude, 0.0, course, 0.0)
        for leg in self._legs:
            if t < leg.depart:
                return position
            if t < leg.arrive:
                share = (t - leg.depart) / (leg.arrive - leg.depart)
                lat = leg.start.latitude + (leg.end.latitude - leg.start.latitude) * share
                lon = leg.start.longitude + (leg.end.longitude - leg.start.longitude) * share
                driven = leg.distance_before + leg.length_m * share
                return Position(lat, lon, leg.start.speed_kmh, leg.course, driven)
            end = leg.end
            driven = leg.distance_before + leg.length_m
            position = Position(end.latitude, end.longitude, 0.0, leg.course, driven)
        return position
