"""Full-chain fixtures: a whole edgemon chain (scripts/chain.py) in the test's temp dir, with the
three test monitors created and the drive written; every process stopped by PID afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.chain import Chain, pid_alive
from scripts.demo_monitors import door_opened, leaving_depot_at_night, oil_hot_while_driving

CHAIN_SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "chain-drive.toml"


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    whole = Chain(tmp_path, scenario=CHAIN_SCENARIO, log_level="debug")
    started: list[int] = []
    try:
        whole.start_services()
        for make in (door_opened, leaving_depot_at_night, oil_hot_while_driving):
            whole.create_monitor(make(f"{whole.receiver.url}/hooks/{make.__name__}"))
        whole.write_drive()
        yield whole
        started = whole.pids()
    finally:
        started += whole.pids()
        whole.stop()
    assert not [pid for pid in started if pid_alive(pid)], "a process outlived the chain"
