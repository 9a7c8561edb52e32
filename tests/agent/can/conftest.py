"""Fixtures of the CAN area: the demo vehicle, loaded once."""

from __future__ import annotations

import pytest

from agent.can.dbc import Vehicle, demo_buses, load_vehicle


@pytest.fixture(scope="session")
def demo_vehicle() -> Vehicle:
    return load_vehicle(demo_buses())
