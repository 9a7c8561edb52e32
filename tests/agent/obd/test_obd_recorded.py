"""Recorded OBD-II sessions offline: ``obd scan --record`` writes candump logs, ``obd scan
--log`` and ``replay --obd`` read them with no bus (tests/data/obd/drive.log was written by
``tests.agent.obd.record_drive`` against the twin)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.__main__ import main
from agent.can.source import read_log
from agent.model import Frame, Sample
from agent.obd.addressing import Addressing
from agent.obd.client import ObdClient
from agent.obd.recorded import (
    CandumpRecorder,
    MessageReader,
    RecordedLink,
    SessionDecoder,
    guess_addressing,
    messages,
    samples,
)
from agent.obd.service import ObdService
from tests.agent.obd.record_drive import record
from tests.agent.obd.test_obd_service import FAST
from tests.agent.obd.twin_car import VIN, bench, wait_for
from tests.conftest import ROOT

DRIVE = ROOT / "tests/data/obd/drive.log"
MONITORS = [
    {"id": "rpm", "label": "revs",
     "triggerParam": {"triggers": [{"name": "hi", "data": {"data": "obd.engine.rpm",
                      "op": "greaterThan", "value": ["2500"]}}], "boolExp": "hi"}},
    {"id": "fault", "label": "fault", "extendedEventParam": ["vehicle.telemetry.obd.dtc.freeze"],
     "triggerParam": {"triggers": [{"name": "f", "data": {"data": "obd.dtc.new",
                      "op": "onChange"}}], "boolExp": "f"}},
]  # fmt: skip


def _literal(event: dict[str, object], name: str) -> object:
    for value in event["values"]:  # type: ignore[attr-defined]
        if value["data"] == name:
            return value["value"]["body"]["literalValue"]
    raise AssertionError(f"{name} not in the event")


def test_replay_fires_obd_monitors_from_a_recorded_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitors = tmp_path / "monitors.json"
    monitors.write_text(json.dumps(MONITORS))
    assert main(["replay", "--obd", str(DRIVE), "--monitors", str(monitors)]) == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    rpm = [e for e in events if e["monitorId"] == "rpm"]
    assert [_literal(e, "obd.engine.rpm") for e in rpm] == ["3000"]  # once: it stays high
    fault = [e for e in events if e["monitorId"] == "fault"]
    # the first read is the baseline (only a pending code): no event; then the confirmed
    # code with its freeze frame, read before the code changed; then the clear
    assert [_literal(e, "obd.dtc.new") for e in fault] == ["P0301", "none"]
    assert fault[0]["extensions"] == [
        {"type": "vehicle.telemetry.obd.dtc.freeze",
         "body": {"obd.dtc.freeze.code": "P0301", "obd.dtc.freeze.rpm": 750.0}}
    ]  # fmt: skip
    # on the recording's clock: the rpm event is at the answer's recorded time
    times = [f.timestamp for f in read_log(DRIVE)]
    at = datetime.fromisoformat(rpm[0]["eventDate"]).timestamp()
    assert times[0] < at < times[-1]
    assert "OBD-II" in err and "broken=0" in err and "unpaired=0" in err
    # the same replay again: byte-identical (deterministic on the recording's clock)
    assert main(["replay", "--obd", str(DRIVE), "--monitors", str(monitors)]) == 0
    assert capsys.readouterr().out == out


def test_scan_offline_from_the_recorded_log(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["obd", "scan", "--log", str(DRIVE), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["vin"] == "VF3REC0RDED000042"
    assert [(e["id"], e["name"]) for e in found["ecus"]] == [
        ("7E8", "ECM-EngineControl"),
        ("7E9", "TCM-Transmission"),
    ]
    assert found["ecus"][0]["pids"] == ["05", "0C", "0D", "2F"]
    # the latest exchange wins: the log ends after the workshop cleared P0301
    assert found["ecus"][0]["confirmed"] == [] and found["ecus"][0]["pending"] == []
    assert main(["obd", "scan", "--log", str(DRIVE), "--channel", "vcan0"]) == 2
    assert "--log scans a recording" in capsys.readouterr().err


def test_record_refuses_the_kernel_transport_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "k.log"
    args = ["obd", "scan", "--channel", "vcan0", "--transport", "kernel", "--record", str(log)]
    assert main(args) == 2
    assert "--record needs transport python" in capsys.readouterr().err
    assert not log.exists()


def test_scan_record_then_log_gives_the_same_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "scan.log"
    with bench() as b:
        args = ["obd", "scan", "--interface", "virtual", "--channel", b.channel,
                "--listen", "0.3", "--json"]  # fmt: skip
        assert main([*args, "--record", str(log)]) == 0
        live = capsys.readouterr()
    assert "frame(s) recorded" in live.err
    assert main(["obd", "scan", "--log", str(log), "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert offline == json.loads(live.out)
    assert offline["vin"] == VIN and offline["ecus"][0]["confirmed"] == ["P0301"]
    text = log.read_text().splitlines()
    assert text[0].startswith("(") and " can0 " not in text[0]  # the bus's channel name
    assert any("#3000" in line for line in text)  # our flow control is recorded too


def test_29_bit_session_recorded_and_decoded(tmp_path: Path) -> None:
    log = tmp_path / "drive29.log"
    assert record(log, extended=True) > 50
    addressing = guess_addressing(read_log(log))
    assert addressing == Addressing(True)
    reader, decoder = MessageReader(addressing), SessionDecoder()
    found = list(samples(read_log(log), addressing, decoder, reader))
    rpms = [s.value for s in found if s.name == "obd.engine.rpm"]
    assert rpms == [800.0, 800.0, 1500.0, 2200.0, 3000.0, 3000.0, 2600.0, 900.0, 0.0]
    running = [s.value for s in found if s.name == "vehicle.engines.running"]
    assert running[-1] is False and running[0] is True
    assert [s.value for s in found if s.name == "obd.dtc.new"] == ["none", "P0301", "none"]
    assert reader.counters["broken"] == 0 and decoder.counters["unpaired"] == 0
    link = RecordedLink(messages(read_log(log), MessageReader(addressing)))
    scan = ObdClient(link, clock=link.clock).scan()
    assert scan.vin == "VF3REC0RDED000042"
    assert [e.ecu.name for e in scan.ecus] == ["18DAF110", "18DAF118"]


def _frame(arbitration_id: int, data: bytes, at: float = 1.0) -> Frame:
    return Frame(at, arbitration_id, data, is_extended=False, is_fd=False, bus="obd")


def test_broken_sequences_are_counted_and_dropped() -> None:
    reader = MessageReader(Addressing(False))
    frames = [
        _frame(0x7DF, bytes.fromhex("0209020000000000")),
        _frame(0x7E8, bytes.fromhex("1014490201564633")),  # first frame of 20 bytes
        _frame(0x7E8, bytes.fromhex("2252454330524445")),  # sequence 2, 1 expected: dropped
        _frame(0x7E8, bytes.fromhex("2344303030303432")),  # no message under way: dropped
        _frame(0x7E8, bytes.fromhex("0F41")),  # single frame longer than its frame
        _frame(0x7E8, b""),  # empty
        _frame(0x7E8, bytes.fromhex("1001")),  # first frame too short to need one
        _frame(0x7E8, bytes.fromhex("F0")),  # no ISO-TP frame type
        _frame(0x0F6, bytes(8)),  # the car's own traffic
        _frame(0x7E8, bytes.fromhex("03410D32")),  # a good answer after all that
    ]
    found = list(messages(frames, reader))
    assert [(x.answer, x.payload.hex()) for x in found] == [(False, "0902"), (True, "410d32")]
    assert reader.counters["broken"] == 6 and reader.counters["organic"] == 1
    decoder = SessionDecoder()
    assert [s for x in found for s in decoder.feed(x)] == []  # 41 0D answers no 09 02
    assert decoder.counters["unpaired"] == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x7DF, 0x7E0, 0x7E8, 0x7E9, 0x7EF, 0x123]),
            st.binary(min_size=0, max_size=8),
        ),
        max_size=40,
    )
)
def test_any_frames_give_messages_or_counts_never_exceptions(
    frames: list[tuple[int, bytes]],
) -> None:
    reader, decoder = MessageReader(Addressing(False)), SessionDecoder()
    out = list(samples((_frame(i, d) for i, d in frames), Addressing(False), decoder, reader))
    assert reader.counters["frames"] == len(frames)
    assert all(isinstance(s.name, str) for s in out)
    link = RecordedLink(
        messages((_frame(i, d) for i, d in frames), MessageReader(Addressing(False)))
    )
    ObdClient(link, clock=link.clock).scan()  # any recorded answer: a scan or nothing


def test_recording_stops_at_its_size_limit(tmp_path: Path) -> None:
    recorder = CandumpRecorder(tmp_path / "small.log", "vcan0", max_bytes=100)
    for i in range(5):
        recorder.write(10.0 + i, 0x7E8, False, bytes.fromhex("03410D32"))
    recorder.close()
    lines = (tmp_path / "small.log").read_text().splitlines()
    assert lines[0] == "(10.000000) vcan0 7E8#03410D32"
    assert recorder.counters == {"frames": len(lines), "dropped": 5 - len(lines)}
    assert [f.data for f in read_log(tmp_path / "small.log")] == [bytes.fromhex("03410D32")] * len(
        lines
    )


def test_the_pollers_own_recording_replays_into_the_values_it_gave(tmp_path: Path) -> None:
    """``[[obd]] record``: the daemon's session appended to a candump log; decoded offline, it
    gives the values the poller put on the inbox, in the same order."""
    log = tmp_path / "agent.log"
    log.write_text("(1.000000) can0 0F6#00\n")  # an earlier session: appended to, not lost
    config = replace(FAST, record=log)
    live: list[Sample] = []
    with bench() as b:
        service = ObdService(config, live.append, link_factory=b.link)
        service.want({"vehicle.energy.fuel.level", "obd.engine.rpm"})
        service.start()
        try:
            wait_for(lambda: len([s for s in live if s.name == "obd.engine.rpm"]) >= 3)
            assert service.snapshot()["record.frames"] > 10
        finally:
            service.stop()
    assert log.read_text().startswith("(1.000000) can0 0F6#00\n")
    addressing = guess_addressing(read_log(log))
    reader, decoder = MessageReader(addressing), SessionDecoder()
    offline = list(samples(read_log(log), addressing, decoder, reader))
    pairs = [(s.name, s.value) for s in live]
    assert [(s.name, s.value) for s in offline][: len(pairs)] == pairs
    assert reader.counters["broken"] == 0 and decoder.counters["unpaired"] == 0


def test_record_with_the_kernel_transport_is_a_configuration_problem() -> None:
    config = replace(FAST, transport="kernel", record=Path("x.log"))
    assert [p.path for p in config.problems("$.obd[0]")] == ["$.obd[0].record"]
