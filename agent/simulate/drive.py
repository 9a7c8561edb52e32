"""The simulated drive: a scenario and a DBC set in, ``(time, Frame | NMEA line)`` out, in time
order. Pure and deterministic: the same scenario, DBC and seed give the same items, byte for byte.

Times are epoch seconds on the scenario's clock (``scenario.start`` + offset), rounded to the
microsecond. Each DBC message is sent at its ``GenMsgCycleTime`` (100 ms when it has none) from a
seeded phase; GPS epochs fall on whole multiples of ``1 / rate_hz`` and each sends RMC, VTG, GGA
and GSA a few milliseconds apart.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from agent.errors import ConfigError
from agent.model import Frame
from agent.simulate.frames import FrameBuilder
from agent.simulate.route import Route
from agent.simulate.scenario import Scenario, ScenarioValue, Timeline
from agent.simulate.sentences import EpochFix, epoch_sentences

DEFAULT_CYCLE = 0.1  # seconds, for messages without GenMsgCycleTime
SENTENCE_GAP = 0.005  # seconds between the sentences of one epoch
SPEED = "vehicle.kinetic.speed"
MOVING = "vehicle.kinetic.moving"
ODOMETER = "vehicle.odometer"
DOORS = "vehicle.doorsState.opening"

SimItem = tuple[float, Frame | str]


class Simulation:
    def __init__(self, scenario: Scenario, builder: FrameBuilder, seed: int | None = None) -> None:
        self.scenario = scenario
        self.builder = builder
        self.seed = scenario.seed if seed is None else seed
        self.route = Route(scenario.route) if scenario.route else None
        self.timelines = {t.name: t for t in scenario.signals}
        self._noise = {name: random.Random(f"{self.seed}/{name}") for name in self.timelines}
        samples = {t.name: t.points[0][1] for t in scenario.signals}
        problems = builder.problems(samples)
        if problems:
            raise ConfigError(problems, "scenario: " + "; ".join(map(str, problems)))
        self._derived = self._derived_names()

    def _derived_names(self) -> list[str]:
        """Data names computed from the route (and door states) that the scenario leaves out."""
        names: list[str] = []
        if self.route is not None:
            names += [SPEED, MOVING]
            if self.scenario.odometer_km is not None:
                names.append(ODOMETER)
        if any(n.startswith(DOORS + ".") for n in self.timelines):
            names.append(DOORS)
        return [n for n in names if n not in self.timelines and self.builder.resolve(n)]

    def names_by_message(self) -> dict[int, list[str]]:
        """The scenario-driven names each message (by frame id) carries."""
        found: dict[int, list[str]] = {}
        for name in [*self.timelines, *self._derived]:
            target = self.builder.resolve(name)
            if target is not None:
                found.setdefault(target[0].frame_id, []).append(name)
        return found

    def values(self, t: float, names: list[str] | None = None) -> dict[str, ScenarioValue]:
        """The value of every scenario-driven name (or of ``names``) ``t`` s after the start."""
        wanted = [*self.timelines, *self._derived] if names is None else names
        found: dict[str, ScenarioValue] = {}
        for name in wanted:
            timeline = self.timelines.get(name)
            if timeline is not None:
                found[name] = self._sample(timeline, t)
        position = self.route.at(t) if self.route is not None else None
        for name in self._derived:
            if name not in wanted:
                continue
            if name == SPEED and position is not None:
                found[name] = position.speed_kmh
            elif name == MOVING and position is not None:
                found[name] = position.speed_kmh > 0.5
            elif name == ODOMETER and position is not None:
                found[name] = (self.scenario.odometer_km or 0.0) + position.distance_m / 1000
            elif name == DOORS:
                doors = [tl.at(t) for k, tl in self.timelines.items() if k.startswith(DOORS + ".")]
                found[name] = "Open" if "Open" in doors else "Closed"
        return found

    def _sample(self, timeline: Timeline, t: float) -> ScenarioValue:
        value = timeline.at(t)
        if timeline.noise and isinstance(value, float | int) and not isinstance(value, bool):
            return float(value) + self._noise[timeline.name].gauss(0.0, timeline.noise)
        return value

    def frames(self) -> Iterator[tuple[float, Frame]]:
        """Every CAN frame in time order."""
        start, duration = self.scenario.start_epoch, self.scenario.duration
        phase_rng = random.Random(f"{self.seed}/phase")
        queue: list[tuple[float, int, int, int]] = []  # (offset, frame id, index, n)
        messages = self.builder.messages()
        carried = self.names_by_message()
        periods: list[float] = []
        firsts: list[float] = []
        for index, message in enumerate(messages):
            periods.append((message.cycle_time or 0) / 1000 or DEFAULT_CYCLE)
            firsts.append(round(phase_rng.uniform(0, periods[-1]), 4))
            heapq.heappush(queue, (firsts[-1], message.frame_id, index, 0))
        while queue:
            offset, frame_id, index, n = heapq.heappop(queue)
            if offset > duration:
                continue
            when = round(start + offset, 6)
            values = self.values(offset, carried.get(frame_id, []))
            yield when, self.builder.frame(messages[index], when, values, self.scenario.bus)
            following = round(firsts[index] + (n + 1) * periods[index], 6)
            heapq.heappush(queue, (following, frame_id, index, n + 1))

    def fix_at(self, offset: float, rng: random.Random) -> EpochFix:
        gps = self.scenario.gps
        utc = self.scenario.start_utc + timedelta(seconds=offset)
        if self.route is None or not gps.has_fix(offset):
            return EpochFix(utc, None, None)
        where = self.route.at(offset)
        lat, lon = where.latitude, where.longitude
        if gps.noise_m:
            lat += rng.gauss(0.0, gps.noise_m) / 111_320.0
            lon += rng.gauss(0.0, gps.noise_m) / (
                111_320.0 * max(0.01, math.cos(math.radians(lat)))
            )
        return EpochFix(
            utc, lat, lon, where.speed_kmh, where.course, gps.altitude, gps.hdop, gps.satellites
        )

    def sentences(self) -> Iterator[tuple[float, str]]:
        """Every NMEA line (without CRLF) in time order; nothing when the route is empty."""
        if self.route is None:
            return
        start, gps = self.scenario.start_epoch, self.scenario.gps
        step = 1.0 / gps.rate_hz
        rng = random.Random(f"{self.seed}/gps")
        k = math.ceil(start / step - 1e-9)
        while (epoch := k * step) - start <= self.scenario.duration:
            fix = self.fix_at(epoch - start, rng)
            for i, line in enumerate(epoch_sentences(fix, gps.talker)):
                yield round(epoch + 0.02 + i * SENTENCE_GAP, 6), line
            k += 1

    def items(self) -> Iterator[SimItem]:
        """Frames and NMEA lines merged in time order (frames first on a tie)."""
        frames = ((t, 0, i, f) for i, (t, f) in enumerate(self.frames()))
        lines = ((t, 1, i, s) for i, (t, s) in enumerate(self.sentences()))
        merged: Iterator[tuple[float, int, int, Frame | str]] = heapq.merge(frames, lines)
        for t, _, _, item in merged:
            yield t, item


def start_now(scenario: Scenario, now: float) -> Scenario:
    """The same scenario starting at ``now`` (epoch seconds), in its own time zone."""
    moment = datetime.fromtimestamp(round(now), UTC).astimezone(scenario.start.tzinfo)
    return replace(scenario, start=moment)
