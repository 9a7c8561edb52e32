"""``[[obd]]`` of agent.toml as a frozen description (pure; no adapter imported)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import Problem

TRANSPORTS = ("python", "kernel")


@dataclass(frozen=True, slots=True)
class ObdConfig:
    """One diagnostic bus: where it is, how it is addressed, and how gently it is polled."""

    name: str
    channel: str
    interface: str = "socketcan"
    bitrate: int | None = None
    extended: bool = False  # 29-bit identifiers
    transport: str = "python"  # "python": can-isotp over python-can; "kernel": CAN_ISOTP sockets
    requests_per_second: float = 1.0  # the budget of this bus, every request counted
    pid_period: float = 5.0  # each wanted PID read at most this often (seconds)
    codes_period: float = 60.0  # fault codes (03 + 07) read this often while a monitor wants them
    awake_window: float = 5.0  # the car counts as awake this long after its own last frame
    timeout: float = 0.2  # seconds to wait for answers (P2)
    # a car's scan (ECUs, PIDs) cached per VIN this long in state_dir; 0: always a full scan
    scan_cache_age: float = 7 * 86400.0
    record: Path | None = None  # every frame of the session appended here (candump -l format)
    options: Mapping[str, Any] = field(default_factory=dict)  # python-can keyword arguments

    def problems(self, where: str) -> list[Problem]:
        found = []
        if not self.channel:
            found.append(Problem(f"{where}.channel", "required (e.g. can0, vcan0)"))
        if self.transport not in TRANSPORTS:
            found.append(Problem(f"{where}.transport", f"one of {', '.join(TRANSPORTS)}"))
        if self.requests_per_second > 10:
            found.append(Problem(f"{where}.requests_per_second", "at most 10 (a car is no bench)"))
        for name in (
            "requests_per_second",
            "pid_period",
            "codes_period",
            "awake_window",
            "timeout",
        ):
            if not getattr(self, name) > 0:
                found.append(Problem(f"{where}.{name}", "must be positive"))
        if self.record is not None and self.transport == "kernel":
            found.append(Problem(f"{where}.record", "needs transport python (the kernel's "
                                 "ISO-TP sockets hide the frames)"))  # fmt: skip
        if not self.scan_cache_age >= 0:  # NaN too
            found.append(Problem(f"{where}.scan_cache_age", "0 (no cache) or seconds"))
        return found

    def cost_per_minute(self, pids: int, codes: bool, ecus: int = 1) -> float:
        """Requests per minute that ``pids`` PIDs (6 per request) and fault codes cost."""
        requests = -(-pids // 6) * 60.0 / self.pid_period
        if codes:
            requests += 2 * ecus * 60.0 / self.codes_period
        return requests
