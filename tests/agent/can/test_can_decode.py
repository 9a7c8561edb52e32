"""The decoder on the demo vehicle: values equal cantools' own, skips counted by reason."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from cantools.database.can import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.can.dbc import DEMO_DBC, BusSpec, Vehicle, load_vehicle
from agent.can.decode import COUNTER_NAMES, Decoder, is_rolling_name, signal_bits
from agent.model import Frame
from agent.state import VehicleState
from tests.agent.can.payloads import encode_raw, plain, random_raw_values, raw_range

ENGINE = {
    "EngineSpeed": 850,
    "OilTemp": 90,
    "CoolantTemp": 85,
    "PowertrainStatus": "RUNNING",
    "EngineRunning": "RUNNING",
    "ThrottlePosition": 0,
    "EngineData_Counter": 0,
    "EngineData_Checksum": 0,
}


def message(vehicle: Vehicle, name: str) -> Message:
    return vehicle.buses["can0"].by_name[name]


def frame_of(msg: Message, values: dict[str, Any], t: float = 1.0) -> Frame:
    data = bytes(msg.encode(values))
    return Frame(t, msg.frame_id, data, msg.is_extended_frame, msg.is_fd)


def all_names(vehicle: Vehicle) -> list[str]:
    return vehicle.catalog.names()


def counted(decoder: Decoder) -> dict[str, int]:
    return {k: v for k, v in decoder.counters.items() if v}


def assert_balanced(decoder: Decoder) -> None:
    """Every frame is decoded or skipped under exactly one reason."""
    c = decoder.counters
    skipped = sum(v for k, v in c.items() if k.startswith("skipped_"))
    assert c["frames"] == c["decoded"] + skipped


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_every_demo_message_decodes_like_cantools(demo_vehicle: Vehicle, seed: int) -> None:
    rng = random.Random(seed)
    decoder = Decoder(demo_vehicle)
    decoder.use(all_names(demo_vehicle))
    state = VehicleState()
    for msg in demo_vehicle.buses["can0"].by_name.values():
        raw = random_raw_values(msg, rng)
        data = encode_raw(msg, raw)
        decoder.feed(Frame(2.0, msg.frame_id, data, msg.is_extended_frame, msg.is_fd), state)
        expected = msg.decode(data, decode_choices=True)
        for name, value in expected.items():
            got = state.get(f"{msg.name}.{name}")
            assert got is not None and got.value == plain(value), (msg.name, name)
            assert got.timestamp == 2.0
    assert decoder.counters["decoded"] == len(demo_vehicle.buses["can0"].by_name)


def test_data_names_get_stellantis_values(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(demo_vehicle.catalog.data_names())
    state = VehicleState()
    engine = message(demo_vehicle, "EngineData")
    changed = decoder.feed(frame_of(engine, ENGINE), state)
    assert set(changed) == {
        "EngineData.OilTemp",
        "vehicle.engines.thermic.oil.temp",
        "EngineData.PowertrainStatus",
        "vehicle.powertrain.status",
        "EngineData.EngineRunning",
        "vehicle.engines.running",
    }
    assert state.current("vehicle.powertrain.status", 1.0) == "Running"
    assert state.current("EngineData.PowertrainStatus", 1.0) == "RUNNING"
    assert state.current("vehicle.engines.running", 1.0) is True
    assert state.current("vehicle.engines.thermic.oil.temp", 1.0) == 90
    # Values not in use are not stored.
    assert state.get("EngineData.EngineSpeed") is None
    charger = message(demo_vehicle, "ChargerStatus")
    values = {
        "ChargingStatus": "IN_PROGRESS",
        "ChargePlugged": "PLUGGED",
        "ChargingPower": 7.4,
        "ChargeTimeRemaining": 95,
        "ChargerStatus_Counter": 3,
        "ChargerStatus_Checksum": 9,
    }
    decoder.feed(frame_of(charger, values, t=2.0), state)
    assert state.current("vehicle.energy.charging.status", 2.0) == "InProgress"
    assert state.current("vehicle.energy.charging.plugged", 2.0) is True


def test_multiplexed_pages_each_update_their_signals(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["environment.air.temp", "vehicle.alarm.trigger.type", "BodyInfo.BeltWarning"])
    state = VehicleState()
    body = message(demo_vehicle, "BodyInfo")
    pages = [
        {"OutsideAirTemp": 21.5, "CabinTemp": 20, "AirConditioning": "ENABLED"},
        {"AlarmActivation": "ACTIVE", "AlarmTriggerType": "VEHICLE_LIFTING"},
        {"BeltWarning": "OMISSION", "BeltDriverFastened": 0, "BeltPassengerFastened": 1},
    ]
    for rounds in range(3):
        for page, values in enumerate(pages):
            t = rounds * 0.3 + page * 0.1
            frame = frame_of(
                body,
                {"BodyInfo_Page": page, "BodyInfo_Counter": rounds, "BodyInfo_Checksum": t * 10}
                | values,
                t,
            )
            decoder.feed(frame, state)
    # Each page decoded once, then recognised as unchanged although pages alternate.
    assert decoder.counters["decoded"] == 3
    assert decoder.counters["skipped_unchanged"] == 6
    assert state.current("environment.air.temp", 0.7) == 21.5
    assert state.current("vehicle.alarm.trigger.type", 0.7) == "VehicleLifting"
    assert state.current("BodyInfo.BeltWarning", 0.7) == "OMISSION"
    air = state.get("environment.air.temp")
    assert air is not None and air.timestamp == pytest.approx(0.6)  # refreshed by skipped frames
    assert air.max_age == pytest.approx(0.3 * 3)  # 3 pages x 100 ms, x stale factor 3


def test_can_fd_and_extended_ids(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use([*demo_vehicle.catalog.data_names(), "BatteryStatusFD.CellVoltage24"])
    state = VehicleState()
    battery = message(demo_vehicle, "BatteryStatusFD")
    values: dict[str, Any] = {s.name: 0 for s in battery.signals}
    values |= {"StateOfCharge": 64.2, "CellVoltage24": 3.912, "PackTempMax": 30, "PackTempMin": 25}
    frame = frame_of(battery, values)
    assert len(frame.data) == 64
    decoder.feed(frame, state)
    assert state.current("vehicle.energy.electric.level", 1.0) == pytest.approx(64.2)
    assert state.current("BatteryStatusFD.CellVoltage24", 1.0) == pytest.approx(3.912)
    charger = message(demo_vehicle, "ChargerStatus")
    assert charger.frame_id == 0x18FF50E5
    ext = frame_of(charger, {s.name: 0 for s in charger.signals}, t=3.0)
    assert decoder.feed(ext, state)
    # A standard id of the demo sent with the extended flag is another message: unknown.
    engine = message(demo_vehicle, "EngineData")
    wrong = Frame(4.0, engine.frame_id, bytes(8), is_extended=True)
    assert decoder.feed(wrong, state) == []
    assert decoder.counters["skipped_unknown_id"] == 1
    assert filters_of(decoder) >= {(0x4C0, 0x7FF, False), (0x18FF50E5, 0x1FFFFFFF, True)}


def filters_of(decoder: Decoder) -> set[tuple[Any, Any, Any]]:
    return {(f["can_id"], f["can_mask"], f["extended"]) for f in decoder.can_filters("can0")}


def test_unchanged_payload_with_ticking_counter_is_skipped(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.engines.thermic.oil.temp"])
    state = VehicleState()
    engine = message(demo_vehicle, "EngineData")
    for i in range(40):
        values = ENGINE | {"EngineData_Counter": i % 16, "EngineData_Checksum": (i * 37) % 256}
        changed = decoder.feed(frame_of(engine, values, t=i * 0.1), state)
        assert changed == ([] if i else ["EngineData.OilTemp", "vehicle.engines.thermic.oil.temp"])
    assert counted(decoder) == {"frames": 40, "decoded": 1, "skipped_unchanged": 39}
    oil = state.get("vehicle.engines.thermic.oil.temp")
    assert oil is not None and oil.timestamp == pytest.approx(3.9)  # still fresh
    assert state.current("vehicle.engines.thermic.oil.temp", 3.9 + 0.29) == 90
    # A real change (even in a signal not in use) decodes; only the used value is reported.
    hotter = ENGINE | {"OilTemp": 131, "EngineData_Counter": 7}
    assert decoder.feed(frame_of(engine, hotter, t=4.0), state) == [
        "EngineData.OilTemp",
        "vehicle.engines.thermic.oil.temp",
    ]
    assert decoder.feed(frame_of(engine, hotter | {"EngineSpeed": 3000}, t=4.1), state) == []
    assert decoder.counters["decoded"] == 3
    oil = state.get("vehicle.engines.thermic.oil.temp")
    assert oil is not None and (oil.value, oil.previous, oil.changed_at) == (131, 90, 4.0)


def test_rolling_signal_in_use_is_not_masked(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["EngineData.EngineData_Counter"])
    state = VehicleState()
    engine = message(demo_vehicle, "EngineData")
    for i in range(5):
        decoder.feed(frame_of(engine, ENGINE | {"EngineData_Counter": i}, t=i), state)
    assert decoder.counters["decoded"] == 5
    assert state.current("EngineData.EngineData_Counter", 4) == 4


def test_configured_rolling_signal_is_masked(tmp_path: Path) -> None:
    dbc = tmp_path / "seq.dbc"
    dbc.write_text(
        'VERSION ""\nNS_ :\nBS_:\nBU_: ECU\n'
        'BO_ 512 Status: 4 ECU\n SG_ Level : 0|8@1+ (1,0) [0|255] "" ECU\n'
        ' SG_ Seq : 8|8@1+ (1,0) [0|255] "" ECU\n SG_ Sig : 23|16@0+ (1,0) [0|65535] "" ECU\n',
        encoding="utf-8",
    )
    plain_vehicle = load_vehicle([BusSpec("can0", (dbc,), None)])
    configured = load_vehicle([BusSpec("can0", (dbc,), None, ("Status.Seq", "Sig"))])
    for vehicle, decoded in ((plain_vehicle, 10), (configured, 1)):
        decoder = Decoder(vehicle)
        decoder.use(["Status.Level"])
        state = VehicleState()
        for i in range(10):
            data = bytes([7, i, i * 3 % 256, i])
            decoder.feed(Frame(float(i), 512, data), state)
        assert decoder.counters["decoded"] == decoded
        # With no cycle time in the DBC, staleness uses the default timeout x factor.
        level = state.get("Status.Level")
        assert level is not None and level.max_age == 5.0 * 3.0


def test_every_kind_of_bad_frame_is_counted(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.kinetic.speed", "environment.air.temp", "vehicle.energy.electric.level"])
    state = VehicleState()
    bad = [
        Frame(1.0, 0x7AB, bytes(8)),  # unknown id
        Frame(1.0, 0x1A0, bytes(8)),  # EngineData: known, nothing in use
        Frame(1.0, 0x0B4, bytes(9), is_fd=True),  # VehicleMotion: longer than the DBC says
        Frame(1.0, 0x0B4, bytes(7)),  # VehicleMotion: shorter
        Frame(1.0, 0x4C0, bytes(8)),  # the 64-byte FD message as a classic frame
        Frame(1.0, 0x3A0, bytes([3, 0, 0, 0, 0, 0, 0, 0])),  # BodyInfo: no page 3
        Frame(1.0, 0x0B4, bytes(8), bus="can9"),  # a bus without DBC
    ]
    for frame in bad:
        assert decoder.feed(frame, state) == []
    assert counted(decoder) == {
        "frames": 7,
        "skipped_unknown_id": 1,
        "skipped_unused": 1,
        "skipped_bad_length": 3,
        "skipped_decode_error": 1,
        "skipped_unknown_bus": 1,
    }
    assert len(state) == 0
    # Good frames still decode afterwards.
    motion = message(demo_vehicle, "VehicleMotion")
    values = {s.name: 0 for s in motion.signals} | {"Speed": 88.5, "Moving": "MOVING"}
    decoder.feed(frame_of(motion, values, t=2.0), state)
    assert state.current("vehicle.kinetic.speed", 2.0) == pytest.approx(88.5)


def test_unmapped_enum_value_leaves_data_name_unknown(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.powertrain.status"])
    state = VehicleState()
    engine = message(demo_vehicle, "EngineData")
    decoder.feed(frame_of(engine, ENGINE, t=1.0), state)
    changed = decoder.feed(frame_of(engine, ENGINE | {"PowertrainStatus": "SNA"}, t=1.1), state)
    assert changed == ["EngineData.PowertrainStatus"]
    assert state.current("EngineData.PowertrainStatus", 1.1) == "SNA"
    status = state.get("vehicle.powertrain.status")
    assert status is not None and (status.value, status.timestamp) == ("Running", 1.0)
    assert decoder.counters["unmapped_value"] == 1
    assert state.current("vehicle.powertrain.status", 1.0 + 0.3 + 0.01) is None  # stale


def test_use_selects_ids_and_filters(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    assert decoder.can_filters("can0") == []
    decoder.use(["vehicle.kinetic.speed", "VehicleMotion.Moving", "gps.only", "Nope.Nope"])
    assert filters_of(decoder) == {(0x0B4, 0x7FF, False)}
    assert decoder.unresolved == {"gps.only", "Nope.Nope"}
    assert decoder.can_filters("can7") == []


def test_new_state_object_is_not_confused_with_the_old(demo_vehicle: Vehicle) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.engines.thermic.oil.temp"])
    engine = message(demo_vehicle, "EngineData")
    first, second = VehicleState(), VehicleState()
    decoder.feed(frame_of(engine, ENGINE), first)
    assert decoder.feed(frame_of(engine, ENGINE, t=2.0), second) != []
    assert second.current("vehicle.engines.thermic.oil.temp", 2.0) == 90


def test_rolling_names() -> None:
    for name in ("EngineData_Counter", "CRC", "AliveCounter", "CHECKSUM", "COUNTER_ALT",
                 "MSG_CNT", "ACC_06_BZ", "XXX_Checksumme", "RollingCounter", "CHKSUM"):  # fmt: skip
        assert is_rolling_name(name), name
    for name in ("Speed", "OilTemp", "CONTROL", "ACCEL_CMD", "Count", "STEER_ANGLE"):
        assert not is_rolling_name(name), name


def test_signal_bits_match_cantools_encoding() -> None:
    import cantools

    db = cantools.database.load_file(DEMO_DBC)
    for msg in db.messages:
        for signal in msg.signals:
            if signal.is_multiplexer or signal.multiplexer_ids:
                continue
            zero = {s.name: 0 for s in msg.signals if not s.multiplexer_ids}
            if msg.is_multiplexed():
                page = next(iter(msg.signal_tree[0].values()))  # type: ignore[union-attr]
                zero |= {n: 0 for n in page[0]}
            low, high = raw_range(signal)
            ones = zero | {signal.name: -1 if signal.is_signed else high}
            data = encode_raw(msg, ones)
            assert int.from_bytes(data, "little") == signal_bits(signal), signal.name
            assert low < high


def test_counters_are_all_named() -> None:
    decoder_counters = set(COUNTER_NAMES)
    assert {"frames", "decoded", "skipped_unchanged", "skipped_bad_length"} <= decoder_counters


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(
        st.builds(
            Frame,
            timestamp=st.floats(0, 1e9),
            arbitration_id=st.sampled_from([0x0B4, 0x100, 0x1A0, 0x2A0, 0x3A0, 0x4C0, 0x555])
            | st.integers(0, 0x7FF),
            data=st.binary(max_size=64),
            is_extended=st.booleans(),
            is_fd=st.booleans(),
            bus=st.sampled_from(["can0", "can1"]),
        ),
        max_size=30,
    )
)
def test_arbitrary_frames_never_raise(demo_vehicle: Vehicle, frames: list[Frame]) -> None:
    decoder = Decoder(demo_vehicle)
    decoder.use(demo_vehicle.catalog.names())
    state = VehicleState()
    for frame in frames:
        decoder.feed(frame, state)
    assert decoder.counters["frames"] == len(frames)
    assert_balanced(decoder)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), noise=st.lists(st.integers(0, 6), max_size=20))
def test_the_decoders_filters_drop_only_frames_that_change_nothing(
    demo_vehicle: Vehicle, seed: int, noise: list[int]
) -> None:
    """``replay`` reads logs through ``Decoder.can_filters`` (as the kernel filters live): the
    frames it drops change no value, so the changes and the state are those of the full bus."""
    import cantools

    from tests.agent.can.drive import demo_drive

    frames = demo_drive(cantools.database.load_file(DEMO_DBC), seconds=1.3)
    rng = random.Random(seed)
    odd = [
        Frame(1.0, 0x7AB, bytes(8)),
        Frame(1.0, 0x0B4, bytes(9), is_fd=True),
        Frame(1.0, 0x3A0, bytes([3, 0, 0, 0, 0, 0, 0, 0])),
        Frame(1.0, 0x0B4, bytes(8), bus="can9"),
        Frame(1.0, 0x100, bytes(4), is_extended=True),
        Frame(1.0, 0x2A0, bytes([1, 0, 0, 0])),
        Frame(1.0, 0x1A0, rng.randbytes(8)),
    ]
    for kind in noise:
        frames.insert(rng.randrange(len(frames) + 1), odd[kind])
    names = [*rng.sample(demo_vehicle.catalog.names(), 20), "vehicle.doorsState.opening"]
    full, filtered = Decoder(demo_vehicle), Decoder(demo_vehicle)
    full.use(names)
    filtered.use(names)
    rules = [(f["can_id"], f["can_mask"], f["extended"]) for f in filtered.can_filters("can0")]
    kept = [
        f
        for f in frames
        if any((i ^ f.arbitration_id) & m == 0 and e == f.is_extended for i, m, e in rules)
    ]
    state_full, state_filtered = VehicleState(), VehicleState()
    expected = [(f, c) for f in frames if (c := full.feed(f, state_full))]
    got = [(f, c) for f in kept if (c := filtered.feed(f, state_filtered))]
    assert got == expected
    assert filtered.counters["decoded"] == full.counters["decoded"]
    for name in state_full.names():
        assert state_filtered.get(name) == state_full.get(name)
    assert_balanced(filtered)


def test_two_buses_each_decode_with_their_own_dbc(tmp_path: Path) -> None:
    other = tmp_path / "chassis.dbc"
    other.write_text(
        'VERSION ""\nNS_ :\nBS_:\nBU_: ECU\n'
        'BO_ 180 Steering: 2 ECU\n SG_ Angle : 0|16@1- (0.1,0) [-3276.8|3276.7] "deg" ECU\n',
        encoding="utf-8",
    )
    vehicle = load_vehicle([BusSpec("can0", (DEMO_DBC,), None), BusSpec("chassis", (other,), None)])
    decoder = Decoder(vehicle)
    decoder.use(["VehicleMotion.Speed", "Steering.Angle"])
    assert filters_of(decoder) == {(0x0B4, 0x7FF, False)}
    assert decoder.can_filters("chassis") == [
        {"can_id": 0x0B4, "can_mask": 0x7FF, "extended": False}
    ]
    state = VehicleState()
    motion = message(vehicle, "VehicleMotion")
    speed = frame_of(motion, {s.name: 0 for s in motion.signals} | {"Speed": 50.0})
    steering = Frame(1.5, 0x0B4, (-125).to_bytes(2, "little", signed=True), bus="chassis")
    assert decoder.feed(speed, state) == ["VehicleMotion.Speed"]
    assert decoder.feed(steering, state) == ["Steering.Angle"]
    assert state.current("VehicleMotion.Speed", 1.0) == 50.0
    assert state.current("Steering.Angle", 1.5) == pytest.approx(-12.5)
    assert state.current("VehicleMotion.Speed", 1.5) is None  # 20 ms x 3 later: stale
    # The same id with the other bus's length is a bad frame on that bus, not a decode.
    assert decoder.feed(Frame(2.0, 0x0B4, bytes(8), bus="chassis"), state) == []
    assert decoder.counters["skipped_bad_length"] == 1


def test_use_during_a_stream_takes_effect(demo_vehicle: Vehicle) -> None:
    import cantools

    from tests.agent.can.drive import demo_drive

    frames = demo_drive(cantools.database.load_file(DEMO_DBC), seconds=2.0)
    decoder = Decoder(demo_vehicle)
    decoder.use(["vehicle.doorsState.opening"])
    state = VehicleState()
    seen: list[str] = []
    for frame in frames:
        changed = decoder.feed(frame, state)
        seen += changed
        if (
            "vehicle.doorsState.opening" in changed
            and state.current("vehicle.doorsState.opening", frame.timestamp) == "Open"
        ):
            decoder.use(["vehicle.doorsState.opening", "vehicle.powertrain.status"])
    assert "vehicle.powertrain.status" in seen  # STARTING -> RUNNING after the door opened
    assert decoder.counters["frames"] == len(frames)
