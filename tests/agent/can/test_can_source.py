"""Live frames from python-can's in-process ``virtual`` bus, and recorded logs, as Frames."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import cantools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.can.dbc import DEMO_DBC, Vehicle
from agent.can.decode import Decoder
from agent.can.source import BusConfig, CanSource, message_from_frame, read_log
from agent.errors import SourceError
from agent.model import Frame
from agent.state import VehicleState
from tests.agent.can.drive import T0, demo_drive

DATA = Path(__file__).resolve().parents[2] / "data" / "can"


@pytest.fixture
def channel() -> str:
    return f"edgemon-test-{uuid.uuid4().hex}"


@pytest.fixture
def sender(channel: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    try:
        yield bus
    finally:
        bus.shutdown()


def receive(source: CanSource, count: int) -> list[Frame]:
    frames = []
    for _ in range(count * 3):
        frame = source.recv(0.2)
        if frame is not None:
            frames.append(frame)
        if len(frames) == count:
            break
    return frames


def test_virtual_bus_frames_keep_receive_timestamps_and_flags(
    channel: str, sender: can.BusABC
) -> None:
    with CanSource(BusConfig("body", "virtual", channel, fd=True)) as source:
        sent = [
            can.Message(timestamp=1000.25, arbitration_id=0x1A0, data=b"\x01\x02",
                        is_extended_id=False),
            can.Message(timestamp=1000.5, arbitration_id=0x18FF50E5, data=bytes(8),
                        is_extended_id=True),
            can.Message(timestamp=1000.75, arbitration_id=0x4C0, data=bytes(range(64)),
                        is_extended_id=False, is_fd=True, bitrate_switch=True),
        ]  # fmt: skip
        for msg in sent:
            sender.send(msg)
        frames = receive(source, 3)
    assert frames == [
        Frame(1000.25, 0x1A0, b"\x01\x02", False, False, "body"),
        Frame(1000.5, 0x18FF50E5, bytes(8), True, False, "body"),
        Frame(1000.75, 0x4C0, bytes(range(64)), False, True, "body"),
    ]
    assert source.counters["frames"] == 3


def test_filters_from_the_decoder_drop_unused_ids(
    channel: str, sender: can.BusABC, demo_vehicle: Vehicle
) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.kinetic.speed", "vehicle.energy.charging.status"])
    config = BusConfig("can0", "virtual", channel)
    with CanSource(config, decoder.can_filters("can0")) as source:
        for frame_id, extended in ((0x1A0, False), (0x0B4, False), (0x0B4, True),
                                   (0x18FF50E5, True), (0x2A0, False)):  # fmt: skip
            sender.send(can.Message(arbitration_id=frame_id, is_extended_id=extended, data=b""))
        got = [(f.arbitration_id, f.is_extended) for f in receive(source, 2)]
        assert got == [(0x0B4, False), (0x18FF50E5, True)]
        assert source.recv(0.05) is None
        # No id in use: nothing passes (python-can would read [] as "everything").
        source.set_filters([])
        sender.send(can.Message(arbitration_id=0x0B4, is_extended_id=False, data=b""))
        assert source.recv(0.1) is None
        source.set_filters(None)
        sender.send(can.Message(arbitration_id=0x2A0, is_extended_id=False, data=b""))
        assert [f.arbitration_id for f in receive(source, 1)] == [0x2A0]


def test_error_and_remote_frames_are_counted(channel: str, sender: can.BusABC) -> None:
    with CanSource(BusConfig("can0", "virtual", channel)) as source:
        sender.send(can.Message(arbitration_id=0x20000080, is_error_frame=True, data=bytes(8)))
        sender.send(can.Message(arbitration_id=0x123, is_remote_frame=True, is_extended_id=False))
        sender.send(can.Message(arbitration_id=0x124, is_extended_id=False, data=b"\x07"))
        frames = receive(source, 1)
    assert [f.arbitration_id for f in frames] == [0x124]
    assert source.counters["error_frames"] == 1
    assert source.counters["remote_frames"] == 1


def test_source_reopens_after_the_bus_fails(channel: str, sender: can.BusABC) -> None:
    source = CanSource(BusConfig("can0", "virtual", channel), reopen_delay=0.01)
    source.open()
    try:
        assert source._bus is not None
        source._bus.shutdown()  # the interface goes away under the source
        assert source.recv(0.05) is None
        assert source.counters["receive_errors"] == 1
        assert not source.is_open
        for _ in range(20):  # it comes back by itself
            source.recv(0.01)
            if source.is_open:
                break
        assert source.counters["reopens"] == 1
        sender.send(can.Message(arbitration_id=0x0B4, is_extended_id=False, data=b"\x01"))
        assert [f.data for f in receive(source, 1)] == [b"\x01"]
    finally:
        source.close()
    assert source.recv(0.01) is None  # closed on purpose: no reopen
    assert source.counters["reopens"] == 1


def test_unknown_interface_is_a_clear_error() -> None:
    source = CanSource(BusConfig("can0", "no-such-interface", "x"))
    with pytest.raises(SourceError, match=r"CAN bus can0 \(no-such-interface:x\) cannot open"):
        source.open()


def test_bus_that_cannot_open_yet_is_retried_by_recv() -> None:
    source = CanSource(BusConfig("can0", "no-such-interface", "x"), reopen_delay=0.01)
    for _ in range(3):
        assert source.recv(0.02) is None  # never raises: the daemon keeps running
    assert source.counters["open_failures"] >= 2
    source.close()
    assert source.recv(0.01) is None


def test_live_frames_reach_the_vehicle_state(
    channel: str, sender: can.BusABC, demo_vehicle: Vehicle
) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(demo_vehicle.catalog.data_names())
    state = VehicleState()
    db = cantools.database.load_file(DEMO_DBC)
    drive = demo_drive(db, seconds=1.5)
    with CanSource(
        BusConfig("can0", "virtual", channel, fd=True), decoder.can_filters("can0")
    ) as source:
        for frame in drive:
            sender.send(message_from_frame(frame))
        for frame in receive(source, len(drive)):
            decoder.feed(frame, state)
    assert decoder.counters["frames"] == len(drive)
    assert decoder.counters["skipped_unchanged"] > decoder.counters["decoded"]
    now = T0 + 1.5
    assert state.current("vehicle.powertrain.status", now) == "Running"
    door = state.get("vehicle.doorsState.opening")
    assert door is not None and (door.value, door.previous) == ("Closed", "Open")
    assert state.current("vehicle.energy.electric.level", now) == pytest.approx(80.0)


# -- recorded logs ---------------------------------------------------------------------------


def write_log(path: Path, frames: list[Frame]) -> Path:
    with can.Logger(path) as writer:
        for frame in frames:
            writer.on_message_received(message_from_frame(frame))
    return path


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf", ".csv", ".trc"])
def test_log_formats_replay_with_recorded_timestamps(
    tmp_path: Path, suffix: str, demo_vehicle: Vehicle
) -> None:
    db = cantools.database.load_file(DEMO_DBC)
    frames = demo_drive(db, seconds=1.5)
    if suffix == ".trc":  # python-can cannot write CAN FD into .trc
        frames = [f for f in frames if not f.is_fd]
    path = write_log(tmp_path / f"drive{suffix}", frames)
    counters: dict[str, int] = {}
    replayed = list(read_log(path, "can0", counters))
    assert counters["frames"] == len(frames)
    assert [(f.arbitration_id, f.data, f.is_extended, f.is_fd) for f in replayed] == [
        (f.arbitration_id, f.data, f.is_extended, f.is_fd) for f in frames
    ]
    for got, want in zip(replayed, frames, strict=True):
        assert got.timestamp == pytest.approx(want.timestamp, abs=1e-3)
    decoder = Decoder(demo_vehicle)
    decoder.use(demo_vehicle.catalog.data_names())
    state = VehicleState()
    for frame in replayed:
        decoder.feed(frame, state)
    end = T0 + 1.5
    assert state.current("vehicle.engines.thermic.oil.temp", end) == 65
    assert state.current("vehicle.doorsState.opening", end) == "Closed"
    assert state.current("vehicle.kinetic.speed", end) == 0


def test_committed_candump_log_replays_the_demo_drive(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(demo_vehicle.catalog.data_names())
    state = VehicleState()
    changes: list[tuple[float, str, object]] = []
    for frame in read_log(DATA / "demo_drive.log"):
        for name in decoder.feed(frame, state):
            changes.append((frame.timestamp - T0, name, state.current(name, frame.timestamp)))
    door = [(round(t, 2), v) for t, n, v in changes if n == "vehicle.doorsState.opening"]
    assert door == [(0.0, "Closed"), (0.3, "Open"), (1.2, "Closed")]
    end = T0 + 3.0
    assert state.current("vehicle.kinetic.speed", end) == pytest.approx(12.5, abs=0.5)
    assert state.current("vehicle.kinetic.moving", end) is True
    assert state.current("vehicle.safety.beltWarning", end) == "Omission"
    assert decoder.counters["skipped_unchanged"] > decoder.counters["decoded"]


def test_bad_candump_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "mixed.log"
    path.write_text(
        "garbage\n"
        "(1700000000.000000) vcan0 1A0#0011 R\n"
        "(1700000000.100000) vcan0 ZZZ#00\n"
        "(1700000000.200000) vcan0 18FF50E5#0102030405060708\n"
        f"(1700000000.300000) vcan0 4C0##1{'ab' * 64}\n"
        "(1700000000.400000) vcan0 123#R\n"
        "(1700000000.500000) vcan0 20000080#0000000000000000\n"
        "(1700000000.600000) vcan0 124#00112233445566778899\n",
        encoding="ascii",
    )
    counters: dict[str, int] = {}
    frames = list(read_log(path, "can1", counters))
    assert frames == [
        Frame(1700000000.0, 0x1A0, b"\x00\x11", False, False, "can1"),
        Frame(1700000000.2, 0x18FF50E5, bytes(range(1, 9)), True, False, "can1"),
        Frame(1700000000.3, 0x4C0, b"\xab" * 64, False, True, "can1"),
    ]
    assert counters == {
        "frames": 3, "error_frames": 1, "remote_frames": 1, "skipped_bad_line": 3, "filtered": 0,
    }  # fmt: skip


def test_unreadable_logs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unsupported CAN log format"):
        read_log(tmp_path / "x.mf4")
    with pytest.raises(SourceError, match="CAN log not found"):
        read_log(tmp_path / "missing.asc")
    broken = tmp_path / "broken.blf"
    broken.write_bytes(b"LOGG" + bytes(40))
    with pytest.raises(SourceError, match=r"broken\.blf: unreadable"):
        list(read_log(broken))


def test_replay_applies_the_decoders_filters(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.kinetic.speed", "vehicle.energy.charging.status"])
    all_frames = list(read_log(DATA / "demo_drive.log"))
    counters: dict[str, int] = {}
    kept = list(read_log(DATA / "demo_drive.log", "can0", counters, decoder.can_filters("can0")))
    wanted = {(0x0B4, False), (0x18FF50E5, True)}
    assert kept == [f for f in all_frames if (f.arbitration_id, f.is_extended) in wanted]
    assert counters["frames"] == len(all_frames)
    assert counters["filtered"] == len(all_frames) - len(kept) > 0
    none: dict[str, int] = {}
    assert list(read_log(DATA / "demo_drive.log", "can0", none, [])) == []
    assert none["filtered"] == len(all_frames)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(
        st.one_of(
            st.text(alphabet=st.characters(codec="ascii"), max_size=60),
            st.builds(
                "({:.6f}) vcan0 {}#{}".format,
                st.floats(0, 2e9),
                st.sampled_from(["1A0", "18FF50E5", "7FF", "20000080", "ZZ", "12345"]),
                st.text(alphabet="0123456789abcdefR#.", max_size=140),
            ),
        ),
        max_size=25,
    )
)
def test_any_candump_text_is_read_or_counted(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.log"
    path.write_text("\n".join(lines) + "\n", encoding="ascii", errors="replace")
    counters: dict[str, int] = {}
    frames = list(read_log(path, "can0", counters))
    assert counters["frames"] == len(frames)
    outcomes = counters["frames"] + counters["error_frames"] + counters["remote_frames"]
    outcomes += counters["skipped_bad_line"]
    with path.open(encoding="ascii", errors="replace") as text:  # universal newlines
        content = [ln for ln in text if ln.strip() and not ln.strip().startswith("#")]
    assert outcomes == len(content)
    for frame in frames:
        assert len(frame.data) <= (64 if frame.is_fd else 8)
