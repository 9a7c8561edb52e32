"""GPS test fixtures: real pseudo-terminals and GpsSource instances, all closed/stopped after."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from agent.gps.source import GpsConfig, GpsSource
from tests.agent.gps.gps_support import Collector, Pty


@pytest.fixture
def make_pty() -> Iterator[Callable[[], Pty]]:
    made: list[Pty] = []

    def make() -> Pty:
        pty = Pty()
        made.append(pty)
        return pty

    yield make
    for pty in made:
        pty.close()


@pytest.fixture
def start_source() -> Iterator[Callable[[GpsConfig], tuple[GpsSource, Collector]]]:
    started: list[GpsSource] = []

    def start(config: GpsConfig) -> tuple[GpsSource, Collector]:
        collector = Collector()
        source = GpsSource(config, collector)
        started.append(source)
        source.start()
        return source, collector

    yield start
    for source in started:
        source.stop()
        assert not source.running
