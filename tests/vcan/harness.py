"""Where the `vcan` tests run: on this host (it has vcan0), inside the throwaway VM, or nowhere.

The decision is a pure function of what was probed, so every branch is unit-tested; the probe
opens a real AF_CAN socket. Environment:

- ``EDGEMON_VCAN``: ``auto`` (default: host vcan0, else the VM), ``host``, ``vm`` or ``off``.
- ``EDGEMON_VCAN_QEMU``: the QEMU binary (a missing path simulates a machine without QEMU).
- ``EDGEMON_VCAN_REQUIRE=1``: turn "cannot run here" skips into failures (for CI).
- ``EDGEMON_IN_VM=1``: set by the VM's job script; the tests run for real in the guest.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["host", "guest", "vm", "skip"]
SETTINGS = ("auto", "host", "vm", "off")
CAN_FD_MTU = 72


@dataclass(frozen=True)
class HostCan:
    """What SocketCAN offers on this machine."""

    classic: str | None  # a usable vcan for classic frames (vcan0)
    fd: str | None  # a usable vcan with mtu 72 (vcan1, or vcan0 when its mtu is 72)
    admin: bool  # may set links down/up (root)
    reason: str  # why classic is None ("" when usable)


@dataclass(frozen=True)
class Where:
    mode: Mode
    reason: str


def decide(setting: str, in_vm: bool, host: HostCan, machine: str, qemu: str | None) -> Where:
    """Pick where the vcan tests run. Pure: everything it needs was probed beforehand."""
    if in_vm:
        return Where("guest", "inside the vcan VM")
    if setting not in SETTINGS:
        return Where("skip", f"EDGEMON_VCAN={setting!r} is not one of {', '.join(SETTINGS)}")
    if setting == "off":
        return Where("skip", "vcan tests are off (EDGEMON_VCAN=off)")
    if setting in ("auto", "host") and host.classic is not None:
        return Where("host", f"this host has {host.classic}")
    if setting == "host":
        return Where("skip", f"EDGEMON_VCAN=host but no vcan0 here: {host.reason}")
    no_host = f"no SocketCAN on this host ({host.reason})"
    if machine != "x86_64":
        return Where(
            "skip",
            f"{no_host}, and the throwaway VM needs x86_64 (this is {machine}); create vcan0 "
            "(sudo modprobe vcan; sudo ip link add dev vcan0 type vcan; sudo ip link set up vcan0)",
        )
    if qemu is None:
        return Where(
            "skip",
            f"{no_host}, and no QEMU to boot the throwaway VM "
            "(qemu-system-x86_64 not found; `make system-packages` installs qemu-system-x86)",
        )
    return Where("vm", f"{no_host}: running in the throwaway VM ({qemu})")


def _try(argv: list[str]) -> None:
    with contextlib.suppress(OSError):
        subprocess.run(argv, capture_output=True, check=False, timeout=10)


def _can_socket_reason() -> str:
    """ "" when this kernel opens AF_CAN raw sockets, else why not."""
    if not hasattr(socket, "AF_CAN"):
        return "this Python has no AF_CAN"
    try:
        sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    except OSError as exc:
        return f"the kernel has no AF_CAN: {exc.strerror or exc}"
    sock.close()
    return ""


def _mtu(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/mtu").read_text())
    except (OSError, ValueError):
        return None


def _ensure_vcan(name: str, mtu: int | None) -> None:
    """Create ``name`` (root only); errors are left for the probe to report."""
    if _mtu(name) is None:
        _try(["modprobe", "vcan"])
        _try(["ip", "link", "add", "dev", name, "type", "vcan"])
        if mtu is not None:
            _try(["ip", "link", "set", name, "mtu", str(mtu)])
    _try(["ip", "link", "set", "up", name])


def probe_host(create: bool | None = None) -> HostCan:
    """Open a real AF_CAN socket and look for vcan0/vcan1; as root, create them when missing."""
    admin = os.geteuid() == 0
    reason = _can_socket_reason()
    if reason:
        return HostCan(classic=None, fd=None, admin=admin, reason=reason)
    if create if create is not None else admin:
        _ensure_vcan("vcan0", None)
        _ensure_vcan("vcan1", CAN_FD_MTU)
    classic = "vcan0" if _mtu("vcan0") is not None else None
    fd = next((n for n in ("vcan1", "vcan0") if _mtu(n) == CAN_FD_MTU), None)
    why = "" if classic else "AF_CAN works but there is no vcan0 (create it as root)"
    return HostCan(classic=classic, fd=fd, admin=admin, reason=why)


def where_from_environment() -> Where:
    """Probe this machine and decide (the host probe is skipped inside the VM)."""
    from scripts.vcan_vm import qemu_binary

    in_vm = os.environ.get("EDGEMON_IN_VM") == "1"
    setting = os.environ.get("EDGEMON_VCAN", "auto").strip().lower() or "auto"
    host = HostCan(None, None, False, "not probed") if in_vm or setting == "vm" else probe_host()
    return decide(setting, in_vm, host, platform.machine(), qemu_binary())


@dataclass(frozen=True)
class VcanBus:
    """What a `vcan` test gets: the interfaces to use, and whether it may take links down."""

    classic: str
    fd: str | None
    admin: bool
    where: Mode


@dataclass(frozen=True)
class Outcome:
    """The guest's verdict on one test: passed, failed or skipped, with the guest's text."""

    outcome: Literal["passed", "failed", "skipped"]
    text: str
    seconds: float


def merge_reports(lines: list[dict[str, object]]) -> dict[str, Outcome]:
    """Fold the guest's per-phase reports (setup/call/teardown) into one outcome per node id."""
    merged: dict[str, Outcome] = {}
    for line in lines:
        nodeid = str(line["nodeid"])
        outcome = str(line["outcome"])
        text = str(line.get("text", ""))
        seconds = float(str(line.get("seconds", 0.0)))
        before = merged.get(nodeid)
        total = seconds + (before.seconds if before else 0.0)
        if before is not None and before.outcome != "passed":
            merged[nodeid] = Outcome(before.outcome, before.text, total)
        elif outcome == "failed":
            merged[nodeid] = Outcome("failed", f"{line.get('phase')}: {text}", total)
        elif outcome == "skipped":
            merged[nodeid] = Outcome("skipped", text, total)
        else:
            merged[nodeid] = Outcome("passed", "", total)
    return merged
