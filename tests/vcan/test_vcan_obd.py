"""``edgemon-agent obd scan`` on a real vcan interface against the ECU twin (python-can
``socketcan``, same interface): through the kernel's ISO-TP sockets (module ``can-isotp``) and
through can-isotp's pure-Python stack, 11- and 29-bit.

Run where SocketCAN exists (a host vcan0, else the throwaway VM): see tests/vcan/conftest.py.
"""

from __future__ import annotations

import json

import can
import pytest

from agent.__main__ import main
from agent.obd.addressing import Addressing
from agent.obd.twin import DEMO_VIN, TwinRunner, demo_car
from tests.vcan.harness import VcanBus

pytestmark = pytest.mark.vcan


@pytest.mark.parametrize("transport", ["kernel", "python"])
@pytest.mark.parametrize("addressing", ["11", "29"])
def test_vcan_obd_scan(
    vcan: VcanBus, addressing: str, transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extended = addressing == "29"
    bus = can.Bus(interface="socketcan", channel=vcan.classic)
    runner = TwinRunner(bus, demo_car(Addressing(extended))).start()
    try:
        code = main(
            ["obd", "scan", "--channel", vcan.classic, "--transport", transport,
             "--addressing", addressing, "--timeout", "2.0", "--listen", "0.5", "--json"]
        )  # fmt: skip
    finally:
        runner.stop()
        bus.shutdown()
    out, err = capsys.readouterr()
    assert code == 0, err
    found = json.loads(out)
    assert found["vin"] == DEMO_VIN  # 20 bytes: first frame, flow control, consecutive frames
    ecm, tcm = found["ecus"]
    assert (ecm["id"], tcm["id"]) == (("18DAF110", "18DAF118") if extended else ("7E8", "7E9"))
    assert (ecm["name"], tcm["name"]) == ("ECM-EngineControl", "TCM-Transmission"), found
    assert {"0C", "0D", "2F", "A6"} <= set(ecm["pids"]) and tcm["pids"] == ["05", "2F"], found
    assert ecm["pending"] == ["P0301"] and ecm["confirmed"] == [], found
