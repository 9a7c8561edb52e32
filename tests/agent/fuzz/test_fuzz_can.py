"""Fuzz: CAN and CAN FD frames against the demo DBC (every id it defines, and others), any
length, any flags. The decoder never raises; every frame is decoded or skipped once, counted;
every value it stores is a finite number or a choice text."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from agent.can.dbc import Vehicle, demo_buses, load_vehicle
from agent.can.decode import Decoder
from agent.model import Frame
from agent.state import VehicleState
from tests.agent.fuzz.fuzz_support import FUZZ_SETTINGS, lines_of

VEHICLE: Vehicle = load_vehicle(demo_buses())
BUSES = sorted(VEHICLE.buses)
KNOWN_IDS = sorted({key & 0x1FFFFFFF for bus in VEHICLE.buses.values() for key in bus.by_id})

frames = st.builds(
    Frame,
    timestamp=st.floats(0, 2e9),
    arbitration_id=st.sampled_from(KNOWN_IDS) | st.integers(0, 0x1FFFFFFF),
    data=st.binary(max_size=64),
    is_extended=st.booleans(),
    is_fd=st.booleans(),
    bus=st.sampled_from([*BUSES, "nobus"]),
)


def decode_all(batch: list[Frame]) -> Decoder:
    decoder = Decoder(VEHICLE)
    decoder.use(VEHICLE.catalog.names())
    state = VehicleState()
    for frame in batch:
        decoder.feed(frame, state)
    counters = decoder.counters
    assert counters["frames"] == len(batch)
    for name in state.names():
        value = state.current(name, 2e9)
        assert value is None or isinstance(value, str | bool) or math.isfinite(value), name
    return decoder


@FUZZ_SETTINGS
@given(st.lists(frames, min_size=1, max_size=20))
@example([Frame(0.0, KNOWN_IDS[0], b"", is_fd=True)])
def test_fuzzed_frames_are_decoded_or_counted(batch: list[Frame]) -> None:
    decode_all(batch)


def test_regression_frames() -> None:
    batch = []
    for line in lines_of("can.txt"):
        ident, _, data = line.decode("ascii").partition("#")
        extended = len(ident) > 3
        frame_id = int(ident, 16)
        payload = bytes.fromhex(data.removeprefix("#"))
        batch.append(Frame(1.0, frame_id, payload, is_extended=extended, is_fd=len(payload) > 8))
    assert batch
    assert decode_all(batch).counters["decoded"] >= 2
