"""The scenario simulator: a drive described in TOML/JSON becomes CAN frames (demo DBC, cycle
times, rolling counters, checksums) and NMEA sentences, deterministically for a seed.

Pure: ``Simulation.items()`` yields ``(time, Frame | NMEA line)``; ``edgemon-agent simulate``
(``agent.commands.simulate``) does the I/O through ``agent.simulate.sinks``.
"""

from __future__ import annotations

from agent.simulate.drive import SimItem, Simulation, start_now
from agent.simulate.frames import (
    FrameBuilder,
    MapEntry,
    checksum_value,
    load_database,
    load_signal_map,
)
from agent.simulate.route import Position, Route, Waypoint, distance_m
from agent.simulate.scenario import (
    GpsPlan,
    Scenario,
    Timeline,
    load_scenario,
    parse_scenario,
)
from agent.simulate.sentences import EpochFix, checksum, epoch_sentences

__all__ = [
    "EpochFix",
    "FrameBuilder",
    "GpsPlan",
    "MapEntry",
    "Position",
    "Route",
    "Scenario",
    "SimItem",
    "Simulation",
    "Timeline",
    "Waypoint",
    "checksum",
    "checksum_value",
    "distance_m",
    "epoch_sentences",
    "load_database",
    "load_scenario",
    "load_signal_map",
    "parse_scenario",
    "start_now",
]
