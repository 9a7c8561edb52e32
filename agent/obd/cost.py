"""What a monitor costs on the diagnostic bus, in requests per minute (pure).

A monitor's data names that no CAN bus decodes are asked over OBD-II: their PIDs cost one
request per 6 PIDs every ``pid_period``; a fault code name costs a 03 and a 07 request per ECU
every ``codes_period``. ``check`` prints it per monitor; the agent's status carries the sum
of what its monitors want now (``obd.<bus>.requests_per_minute``).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.monitors.data import DataTrigger
from agent.monitors.model import Catalog, Monitor
from agent.obd.names import FAULT_NAMES, pids_for
from agent.obd.settings import ObdConfig


@dataclass(frozen=True, slots=True)
class Cost:
    pids: tuple[int, ...]
    codes: bool
    per_minute: float


def monitor_names(monitor: Monitor) -> set[str]:
    return {t.data for t in monitor.triggers if isinstance(t, DataTrigger)}


def obd_cost(names: set[str], can: Catalog | None, config: ObdConfig, ecus: int = 1) -> Cost:
    """The cost of reading ``names`` (those a CAN catalog lacks) on ``config``'s bus."""
    asked = {n for n in names if can is None or can.describe(n) is None}
    pids = tuple(sorted(pids_for(asked)))
    codes = bool(asked & FAULT_NAMES)
    return Cost(pids, codes, config.cost_per_minute(len(pids), codes, ecus))
