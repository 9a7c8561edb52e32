"""Fixtures of the monitor engine tests (helpers live in ``monitor_support``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.monitors.engine import MemoryFiredStore
from agent.monitors.model import Monitor
from tests.agent.monitors.monitor_support import FakeCatalog, Rig, default_infos


@pytest.fixture
def catalog() -> FakeCatalog:
    return FakeCatalog(default_infos())


@pytest.fixture
def rig(catalog: FakeCatalog) -> Callable[..., Rig]:
    def build(*monitors: Monitor, store: MemoryFiredStore | None = None) -> Rig:
        r = Rig(catalog, store)
        for m in monitors:
            r.add(m)
        return r

    return build
