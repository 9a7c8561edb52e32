"""The pure OBD-II core: requests, answers (guarded), PIDs, bitmaps, VIN, fault codes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import NegativeAnswer, ObdError
from agent.obd import messages as m
from agent.obd.addressing import Addressing, parse_addressing
from agent.obd.faults import FaultDiffer, decode_dtc, encode_dtc, parse_codes
from agent.obd.names import ObdCatalog, obd_info, pids_for
from agent.obd.pids import PIDS, decode


def test_requests_name_up_to_six_pids_and_batches_split_the_rest() -> None:
    assert m.current_data([0x0C, 0x0D]) == b"\x01\x0c\x0d"
    with pytest.raises(ValueError, match="1 to 6"):
        m.current_data([1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="1 to 6"):
        m.current_data([])
    assert m.batches([0x2F, 0x0C, 0x05, 0x0D, 0x11, 0x10, 0x0F, 0x0C]) == [
        (0x05, 0x0C, 0x0D, 0x0F, 0x10, 0x11),
        (0x2F,),
    ]
    assert m.vehicle_info(m.VIN_INFOTYPE) == b"\x09\x02"
    assert m.vehicle_info(m.ECU_NAME_INFOTYPE) == b"\x09\x0a"
    assert m.codes_request(m.PENDING_CODES) == b"\x07"
    with pytest.raises(ValueError):
        m.codes_request(m.CLEAR_CODES)  # clearing is never a "read"
    assert m.freeze_frame(0x0C) == b"\x02\x0c\x00"


@pytest.mark.parametrize(
    ("pid", "data", "value", "unit"),
    [
        (0x0D, b"\x32", 50.0, "km/h"),
        (0x0C, b"\x1a\xf8", 1726.0, "rpm"),
        (0x05, b"\x5a", 50.0, "degC"),
        (0x0F, b"\x00", -40.0, "degC"),
        (0x46, b"\x32", 10.0, "degC"),
        (0x10, b"\x01\x90", 4.0, "g/s"),
        (0x11, b"\xff", 100.0, "%"),
        (0x04, b"\x80", 128 * 100 / 255, "%"),
        (0x2F, b"\x66", 40.0, "%"),
        (0x5E, b"\x00\x64", 5.0, "L/h"),
        (0x31, b"\x01\x00", 256.0, "km"),
        (0x1F, b"\x0e\x10", 3600.0, "s"),
        (0x42, b"\x30\xd4", 12.5, "V"),
        (0xA6, b"\x00\x01\xe2\x40", 12345.6, "km"),
        (0x5C, b"\x82", 90.0, "degC"),
    ],
)
def test_standard_pids_decode_with_their_units(
    pid: int, data: bytes, value: float, unit: str
) -> None:
    assert decode(pid, data) == pytest.approx(value)
    assert PIDS[pid].unit == unit
    assert decode(pid, data[:-1]) is None  # a short answer is no value


def test_pids_map_to_stellantis_names_where_one_exists() -> None:
    assert PIDS[0x0D].data_name == "vehicle.kinetic.speed"
    assert PIDS[0x2F].data_name == "vehicle.energy.fuel.level"
    assert PIDS[0xA6].data_name == "vehicle.odometer"
    assert PIDS[0x5C].data_name == "vehicle.engines.thermic.oil.temp"
    assert PIDS[0x46].data_name == "environment.air.temp"
    assert pids_for({"vehicle.energy.fuel.level"}) == {0x2F}
    assert pids_for({"vehicle.engines.running", "unknown"}) == {0x0C}
    info = obd_info("obd.engine.rpm")
    assert info is not None and info.unit == "rpm"
    assert ObdCatalog(None).describe("obd.dtc.new") is not None
    assert "obd.controlModule.voltage" in ObdCatalog(None).names()


def test_a_multi_pid_answer_is_split_by_pid_sizes() -> None:
    request = m.current_data([0x0C, 0x0D, 0xA6])
    answer = bytes.fromhex("41 0C 1AF8 0D 32 A6 0001E240".replace(" ", ""))
    assert m.current_values(request, answer) == {0x0C: 1726.0, 0x0D: 50.0, 0xA6: 12345.6}
    truncated = answer[:-2]  # the odometer cut short: what came before is kept
    assert m.current_values(request, truncated) == {0x0C: 1726.0, 0x0D: 50.0}


def test_answers_are_guarded() -> None:
    request = m.current_data([0x0D])
    with pytest.raises(NegativeAnswer) as refused:
        m.check_answer(request, b"\x7f\x01\x31")
    assert refused.value.code == m.OUT_OF_RANGE
    for bad in (
        b"",
        b"\x7f\x01",
        b"\x7f\x09\x31",
        b"\x49\x02",
        b"\x41",
        b"\x41\x0c\x00",
        b"\x41\x0d",
    ):
        with pytest.raises(ObdError):
            m.current_values(request, bad)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=40), st.sampled_from([b"\x01\x0c\x0d", b"\x01\x00", b"\x03", b"\x09\x02"])
)
def test_any_bytes_give_a_value_or_an_obd_error(answer: bytes, request: bytes) -> None:
    parse = {
        0x01: m.current_values,
        0x03: parse_codes,
        0x09: m.parse_vin,
    }[request[0]]
    with contextlib.suppress(ObdError):
        parse(request, answer)


def test_bitmaps_list_supported_pids() -> None:
    assert m.bitmap_pids(0x00, bytes.fromhex("BE1FA813")) == {
        0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x13, 0x15,
        0x1C, 0x1F, 0x20,
    }  # fmt: skip
    assert m.bitmap_pids(0x20, bytes.fromhex("80000001")) == {0x21, 0x40}
    with pytest.raises(ObdError):
        m.bitmap_pids(0x00, b"\xff\xff")
    with pytest.raises(ObdError):
        m.bitmap_pids(0x10, b"\x00\x00\x00\x00")


def test_vin_and_ecu_name() -> None:
    vin = b"\x49\x02\x01" + b"1HGCM82633A004352"
    assert m.parse_vin(b"\x09\x02", vin) == "1HGCM82633A004352"
    padded = b"\x49\x02\x01\x00\x00\x00" + b"1hgcm82633a004352"
    assert m.parse_vin(b"\x09\x02", padded) == "1HGCM82633A004352"
    with pytest.raises(ObdError, match="17"):
        m.parse_vin(b"\x09\x02", b"\x49\x02\x01SHORT")
    with pytest.raises(ObdError, match="infotype"):
        m.parse_vin(b"\x09\x02", b"\x49\x0a\x01" + b"1HGCM82633A004352")
    name = b"\x49\x0a\x01ECM\x00-EngineControl\x00\x00"
    assert m.parse_ecu_name(b"\x09\x0a", name) == "ECM?-EngineControl"


def test_freeze_frame() -> None:
    found = m.parse_freeze_frame(m.freeze_frame(0x05), b"\x42\x05\x00\x7b")
    assert (found.pid, found.frame, found.value) == (0x05, 0, 83.0)
    with pytest.raises(ObdError):
        m.parse_freeze_frame(m.freeze_frame(0x05), b"\x42\x0c\x00\x7b")


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"\x03\x01", "P0301"), (b"\x04\x20", "P0420"), (b"\x41\x23", "C0123"),
     (b"\x9a\xbc", "B1ABC"), (b"\xc1\x00", "U0100"), (b"\x3f\xff", "P3FFF")],
)  # fmt: skip
def test_dtc_encoding_both_ways(raw: bytes, code: str) -> None:
    assert decode_dtc(raw[0], raw[1]) == code
    assert encode_dtc(code) == raw


def test_fault_code_answers() -> None:
    answer = b"\x43\x03\x03\x01\x00\x00\x04\x20"
    assert parse_codes(b"\x03", answer) == ["P0301", "P0420"]  # 0000 is padding
    assert parse_codes(b"\x07", b"\x47\x00") == []
    for bad in (b"\x43", b"\x43\x02\x03\x01", b"\x43\x01\x03", b"\x47\x00"):
        with pytest.raises(ObdError):
            parse_codes(b"\x03", bad)


def test_differ_reports_new_pending_confirmed_and_cleared_per_ecu() -> None:
    differ = FaultDiffer()
    first = differ.update("7E8", ["P0300"], ["P0171"])
    assert [(c.code, c.change) for c in first] == [("P0300", "present"), ("P0171", "pending")]
    assert differ.update("7E8", ["P0300"], ["P0171"]) == []
    confirmed = differ.update("7E8", ["P0300", "P0171"], [])
    assert [(c.code, c.change, c.was_pending) for c in confirmed] == [("P0171", "confirmed", True)]
    other = differ.update("7E9", [], [])
    assert other == []
    cleared = differ.update("7E8", [], [])
    assert {(c.code, c.change) for c in cleared} == {("P0300", "cleared"), ("P0171", "cleared")}
    back = differ.update("7E8", ["P0300"], [])
    assert [(c.code, c.change, c.was_pending) for c in back] == [("P0300", "confirmed", False)]
    assert differ.update("7E9", [], ["U0100"])[0].ecu == "7E9"


def test_addressing_11_and_29_bit() -> None:
    eleven = Addressing(False)
    ecu = eleven.ecu_for_answer(0x7E9)
    assert ecu is not None and (ecu.request_id, ecu.name) == (0x7E1, "7E9")
    assert eleven.ecu_for_answer(0x7E0) is None and eleven.functional_id == 0x7DF
    assert eleven.is_diagnostic(0x7DF, False) and not eleven.is_diagnostic(0x0F6, False)
    wide = parse_addressing("29")
    ecu = wide.ecu_for_answer(0x18DAF110)
    assert ecu is not None and ecu.request_id == 0x18DA10F1 and ecu.name == "18DAF110"
    assert wide.functional_id == 0x18DB33F1 and wide.ecu_for_answer(0x18DAF2F1) is None
    assert wide.is_diagnostic(0x18DB33F1, True) and not wide.is_diagnostic(0x0CF00400, True)
    with pytest.raises(ValueError):
        parse_addressing("16")


def test_a_late_answer_to_an_earlier_request_is_recognised() -> None:
    assert m.answers_request(b"\x01\x40", b"\x41\x40\x00\x00\x00\x01")
    assert not m.answers_request(b"\x01\x40", b"\x41\x20\x00\x00\x00\x01")
    assert not m.answers_request(b"\x09\x02", b"\x49\x0a\x01ECM")
    assert m.answers_request(b"\x03", b"\x43\x00") and not m.answers_request(b"\x03", b"\x47\x00")
    assert m.answers_request(b"\x01\x0d", b"\x7f\x01\x21")
    assert not m.answers_request(b"\x01\x0d", b"\x7f\x09\x21") and not m.answers_request(
        b"\x01", b""
    )
