"""The monitors of the demo and the full-chain tests (Stellantis MonitorParameter JSON), built
for the scenario ``docs/scenarios/night-depot-exit.toml``: a depot at Rungis, a night drive."""

from __future__ import annotations

from typing import Any

DEPOT = {"latitude": 48.74660, "longitude": 2.35180}


def _subscribe(target: str, name: str, retry_delay: int) -> dict[str, Any]:
    return {
        "retryPolicy": {"policy": "Always", "retryDelay": retry_delay},
        "callback": {
            "webhook": {
                "name": name,
                "target": target,
                "attributes": [
                    {"type": "Header", "key": "X-Vehicle-Id", "value": "$vin"},
                    {"type": "Body", "key": "vin", "value": "$vin"},
                    {"type": "Body", "key": "site", "value": "rungis"},
                ],
            }
        },
    }


def leaving_depot_at_night(target: str, retry_delay: int = 1) -> dict[str, Any]:
    """Out of a 150 m circle around the depot while in use between 22:00 and 06:00 local."""
    return {
        "label": "Leaving the depot at night",
        "subscribeParam": _subscribe(target, "night-ops", retry_delay),
        "extendedEventParam": ["vehicle.position", "vehicle.doorsState"],
        "triggerParam": {
            "triggers": [
                {
                    "name": "outOfDepot",
                    "zone": {
                        "transition": "Out",
                        "place": {"radiusMeters": 150, "center": DEPOT},
                        "marginMeters": 10,
                    },
                },
                {
                    "name": "night",
                    "time": {
                        "timeZone": "Europe/Paris",
                        "times": [{"recurrence": "Daily", "start": "PT22H", "duration": "PT8H"}],
                    },
                },
            ],
            "boolExp": "outOfDepot & night",
        },
    }


def oil_hot_while_driving(target: str, retry_delay: int = 1) -> dict[str, Any]:
    """Engine oil above 130 °C while the vehicle moves faster than 5 km/h (re-armed once the oil
    is back under 127 °C: ``hysteresis`` keeps a noisy sensor from firing twice)."""
    return {
        "label": "Oil above 130 °C while driving",
        "subscribeParam": _subscribe(target, "maintenance", retry_delay),
        "extendedEventParam": ["vehicle.position", "vehicle.status"],
        "triggerParam": {
            "triggers": [
                {
                    "name": "oilHot",
                    "data": {
                        "data": "vehicle.engines.thermic.oil.temp",
                        "op": "greaterThan",
                        "value": ["130"],
                        "hysteresis": 3,
                    },
                },
                {
                    "name": "driving",
                    "data": {"data": "vehicle.kinetic.speed", "op": "greaterThan", "value": ["5"]},
                },
            ],
            "boolExp": "oilHot & driving",
        },
    }


def door_opened(target: str, retry_delay: int = 1) -> dict[str, Any]:
    """The driver's door opened (each opening is one event). Stellantis allows only onChange on
    ``vehicle.doorsState.opening``, so this names the DBC signal directly."""
    return {
        "label": "Driver door opened",
        "subscribeParam": _subscribe(target, "security", retry_delay),
        "extendedEventParam": ["vehicle.doorsState"],
        "triggerParam": {
            "triggers": [
                {
                    "name": "doorOpen",
                    "data": {
                        "data": "DoorStatus.DoorFrontLeft",
                        "op": "equalsTo",
                        "value": ["OPEN"],
                    },
                }
            ],
            "boolExp": "doorOpen",
        },
    }
