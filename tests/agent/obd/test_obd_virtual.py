"""OBD-II through can-isotp's pure-Python stack on a python-can virtual bus, against the twin:
discovery, 11- and 29-bit, multi-frame VIN, the CLI scan, a silent car left alone."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import can
import pytest

from agent.__main__ import main
from agent.obd.addressing import Addressing
from agent.obd.client import ObdClient, Scan
from agent.obd.link import PythonCanLink
from agent.obd.twin import DEMO_VIN
from tests.agent.obd.twin_car import VIN, bench, wait_for
from tests.conftest import ROOT


@pytest.mark.parametrize("extended", [False, True], ids=["11-bit", "29-bit"])
def test_scan_finds_ecus_vin_pids_and_codes(extended: bool) -> None:
    with bench(extended) as b:
        link = b.link()
        try:
            link.listen(0.3)
            assert link.last_organic is not None  # the car's own traffic was heard
            scan = ObdClient(link).scan()
        finally:
            link.close()
        assert scan.vin == VIN
        ecm, tcm = scan.ecus
        assert ecm.ecu.name == ("18DAF110" if extended else "7E8")
        assert ecm.ecu.request_id == (0x18DA10F1 if extended else 0x7E0)
        assert tcm.ecu.name == ("18DAF118" if extended else "7E9")
        assert (ecm.name, tcm.name) == ("ECM-EngineControl", "TCM-Transmission")
        assert ecm.pids == {0x0C, 0x0D, 0x2F, 0x42, 0xA6}  # across the 00/20/40/.../A0 bitmaps
        assert tcm.pids == {0x05, 0x2F}
        assert (ecm.confirmed, ecm.pending, tcm.confirmed) == (("P0301",), ("P0420",), ())
        # VIN and names (20+ bytes) came in several frames: flow control went to each ECU's
        # physical request id, never to the functional one
        flow_controls = {f.arbitration_id for f in link.sent if f.data[0] >> 4 == 3}
        ids = {0x18DA10F1, 0x18DA18F1} if extended else {0x7E0, 0x7E1}
        assert flow_controls == ids
        functional = 0x18DB33F1 if extended else 0x7DF
        assert {f.arbitration_id for f in link.sent if f.data[0] >> 4 == 0} <= {
            functional,
            0x18DA10F1,
            0x18DA18F1,
            0x7E0,
            0x7E1,
        }


def test_cli_scan_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    with bench() as b:
        args = ["obd", "scan", "--interface", "virtual", "--channel", b.channel, "--listen", "0.3"]
        assert main(args) == 0
        text = capsys.readouterr().out
        assert f"VIN {VIN}; 2 ECU(s)" in text
        assert "ECU 7E8 (asked at 7E0) ECM-EngineControl" in text
        assert "0D speed" in text and "confirmed codes: P0301" in text
        assert main([*args, "--json"]) == 0
        found = json.loads(capsys.readouterr().out)
        assert found["vin"] == VIN
        assert [e["id"] for e in found["ecus"]] == ["7E8", "7E9"]
        assert "vehicle.odometer" in found["ecus"][0]["dataNames"]
        assert found["ecus"][0]["pending"] == ["P0420"]


def test_cli_scan_sends_nothing_to_a_silent_car(capsys: pytest.CaptureFixture[str]) -> None:
    with bench() as b:
        b.runner.organic = False
        b.car.asleep = True
        args = ["obd", "scan", "--interface", "virtual", "--channel", b.channel, "--listen", "0.3"]
        assert main(args) == 1
        assert "looks asleep, nothing sent" in capsys.readouterr().err
        assert b.runner.woken_by == 0 and b.car.requests == []


def test_malformed_answers_are_counted_not_raised() -> None:
    with bench() as b:
        b.car.ecus[0].vin = "SHORT"  # 09 02 answers with a VIN of 5 letters
        b.car.ecus[1].refused[0x00] = 0x22  # the TCM refuses even 01 00 when asked alone
        link = b.link()
        try:
            link.listen(0.2)
            client = ObdClient(link)
            scan = client.scan()
        finally:
            link.close()
        assert scan.vin is None
        assert client.counters["bad_answers"] >= 1
        assert [e.ecu.name for e in scan.ecus] == ["7E8"]  # a silent TCM on functional 01 00


def test_simulate_answers_obd_beside_its_drive(tmp_path: Path) -> None:
    """``simulate --obd-twin``: the drive's frames are the car's own traffic, the demo car's
    ECUs answer the scan on the same bus (simulate runs in this, the main, thread: it sets a
    signal handler)."""
    channel = f"obd-sim-{tmp_path.name}"
    scenario = ROOT / "tests" / "data" / "scenarios" / "short-drive.toml"
    argv = ["simulate", "--scenario", str(scenario), "--duration", "5", "--can-interface",
            "virtual", "--can-channel", channel, "--obd-twin"]  # fmt: skip
    link = PythonCanLink(can.Bus(interface="virtual", channel=channel), Addressing(False))
    found: list[Scan] = []

    def scan() -> None:
        wait_for(lambda: link.listen(0.1) or link.last_organic is not None)
        found.append(ObdClient(link).scan())

    scanner = threading.Thread(target=scan, daemon=True)
    scanner.start()
    try:
        assert main(argv) == 0
        scanner.join(30)
    finally:
        link.close()
    (result,) = found
    assert result.vin == DEMO_VIN and [e.ecu.name for e in result.ecus] == ["7E8", "7E9"]
    assert result.ecus[0].pending == ("P0301",)


def test_garbage_frames_never_break_the_link() -> None:
    """Random frames from every answer id (odd ISO-TP PCI, lengths, sequence numbers): the link
    keeps receiving; what completes is bounded bytes for a client to judge."""
    rng = random.Random(16)
    channel = f"obd-garbage-{rng.random()}"
    sender = can.Bus(interface="virtual", channel=channel)
    link = PythonCanLink(can.Bus(interface="virtual", channel=channel), Addressing(False))
    answers = []
    try:
        for i in range(2000):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
            ident = rng.choice([0x7E8, 0x7E9, 0x7EF, 0x100])
            sender.send(can.Message(arbitration_id=ident, data=data, is_extended_id=False))
            if i % 50 == 0:
                answers += link.receive(0.005)
        answers += link.receive(0.05)
    finally:
        link.close()
        sender.shutdown()
    assert link.last_organic is not None  # the 0x100 frames are the car's own
    assert answers and all(0 < len(a.payload) <= 4095 for a in answers)
    assert link.mux.counters["frames_received"] > 1000


def test_cli_scan_reads_the_obd_bus_of_agent_toml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with bench(extended=True) as b:
        config = tmp_path / "agent.toml"
        config.write_text(
            'vin = "VF3X"\n[[obd]]\nname = "diag"\ninterface = "virtual"\n'
            f'channel = "{b.channel}"\naddressing = "29"\n'
        )
        assert main(["obd", "scan", "--config", str(config), "--listen", "0.3"]) == 0
        assert "ECU 18DAF110 (asked at 18DA10F1) ECM-EngineControl" in capsys.readouterr().out
        assert main(["obd", "scan", "--config", str(config), "--bus", "other"]) == 2
        assert "no [[obd]] bus other" in capsys.readouterr().err
