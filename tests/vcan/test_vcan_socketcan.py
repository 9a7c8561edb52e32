"""python-can's `socketcan` interface against real vcan interfaces and real can-utils.

Run where SocketCAN exists (a host vcan0, else the throwaway VM): see tests/vcan/conftest.py.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from tests.vcan.harness import VcanBus
from tests.vcan.vcan_tools import cansend, sh

pytestmark = pytest.mark.vcan


def classic_mtu(channel: str) -> int:
    return int(Path(f"/sys/class/net/{channel}/mtu").read_text())


def drain(bus: can.BusABC, quiet: float = 0.3) -> list[can.Message]:
    """Every frame already queued, until the bus stays quiet for ``quiet`` seconds."""
    frames = []
    while (msg := bus.recv(timeout=quiet)) is not None:
        frames.append(msg)
    return frames


@pytest.fixture
def bus(vcan: VcanBus) -> Iterator[can.BusABC]:
    with can.Bus(interface="socketcan", channel=vcan.classic) as opened:
        yield opened


def test_vcan_cansend_reaches_python_can(vcan: VcanBus, bus: can.BusABC) -> None:
    cansend(vcan.classic, "123#DEADBEEF")
    cansend(vcan.classic, "18FEF100#0102030405060708")
    first, second = drain(bus)
    assert (first.arbitration_id, first.is_extended_id, bytes(first.data)) == (
        0x123,
        False,
        bytes.fromhex("DEADBEEF"),
    )
    assert (second.arbitration_id, second.is_extended_id, second.dlc) == (0x18FEF100, True, 8)
    assert first.channel == vcan.classic


def test_vcan_canplayer_replays_a_candump_log(
    vcan: VcanBus, bus: can.BusABC, tmp_path: Path
) -> None:
    log = tmp_path / "drive.log"
    log.write_text(
        "(1700000000.000000) vcan0 100#0001\n"
        "(1700000000.010000) vcan0 101#0002\n"
        "(1700000000.020000) vcan0 102#0003\n"
    )
    done = sh("canplayer", "-I", str(log), f"{vcan.classic}=vcan0")
    assert done.returncode == 0, done.stderr
    frames = drain(bus)
    assert [(m.arbitration_id, bytes(m.data)) for m in frames] == [
        (0x100, b"\x00\x01"),
        (0x101, b"\x00\x02"),
        (0x102, b"\x00\x03"),
    ]


def test_vcan_kernel_filter_keeps_other_ids_away(vcan: VcanBus) -> None:
    wanted = [{"can_id": 0x123, "can_mask": 0x7FF, "extended": False}]
    with (
        can.Bus(interface="socketcan", channel=vcan.classic, can_filters=wanted) as filtered,
        can.Bus(interface="socketcan", channel=vcan.classic) as everything,
    ):
        for frame in ("100#01", "123#02", "200#03", "01000123#04"):
            cansend(vcan.classic, frame)
        seen_all = [m.arbitration_id for m in drain(everything)]
        seen_filtered = [m.arbitration_id for m in drain(filtered)]
    assert seen_all == [0x100, 0x123, 0x200, 0x1000123]
    assert seen_filtered == [0x123]


def test_vcan_timestamp_is_the_kernels_receive_time(vcan: VcanBus, bus: can.BusABC) -> None:
    before = time.time()
    cansend(vcan.classic, "321#AA")
    after = time.time()
    time.sleep(1.0)  # the frame waits in the socket queue: decode time is much later
    msg = bus.recv(timeout=5)
    read_at = time.time()
    assert msg is not None
    assert before - 0.01 <= msg.timestamp <= after + 0.01
    assert read_at - msg.timestamp >= 0.9


def test_vcan_fd_frames_on_an_mtu_72_vcan(vcan: VcanBus, bus: can.BusABC) -> None:
    if vcan.fd is None:
        pytest.skip("no vcan with mtu 72 here (create vcan1 with `ip link set vcan1 mtu 72`)")
    payload = bytes(range(64))
    with (
        can.Bus(interface="socketcan", channel=vcan.fd, fd=True) as fd_bus,
        can.Bus(interface="socketcan", channel=vcan.fd, fd=True) as peer,
    ):
        cansend(vcan.fd, f"456##1{payload.hex()}")
        msg = fd_bus.recv(timeout=5)
        assert msg is not None
        assert (msg.is_fd, msg.bitrate_switch, msg.dlc, bytes(msg.data)) == (
            True,
            True,
            64,
            payload,
        )
        peer.send(can.Message(arbitration_id=0x457, data=payload[:12], is_fd=True))
        echoed = [m for m in drain(fd_bus) if m.arbitration_id == 0x457]
        assert [(m.is_fd, m.dlc, bytes(m.data)) for m in echoed] == [(True, 12, payload[:12])]
    if classic_mtu(vcan.classic) == 16:
        refused = sh("cansend", vcan.classic, f"456##1{payload.hex()}")
        assert refused.returncode != 0
        assert "not CAN FD capable" in refused.stderr + refused.stdout


def test_vcan_link_down_then_up(vcan: VcanBus, bus: can.BusABC) -> None:
    if not vcan.admin:
        pytest.skip("taking vcan0 down needs root")
    cansend(vcan.classic, "111#01")
    assert [m.arbitration_id for m in drain(bus)] == [0x111]
    try:
        assert sh("ip", "link", "set", vcan.classic, "down").returncode == 0
        with pytest.raises(can.CanOperationError) as raised:
            bus.recv(timeout=5)
        assert raised.value.error_code == errno.ENETDOWN
        assert sh("cansend", vcan.classic, "112#02").returncode != 0
    finally:
        assert sh("ip", "link", "set", vcan.classic, "up").returncode == 0
    with can.Bus(interface="socketcan", channel=vcan.classic) as reopened:
        cansend(vcan.classic, "113#03")
        assert [m.arbitration_id for m in drain(reopened)] == [0x113]
