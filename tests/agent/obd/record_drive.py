"""Record an OBD-II session against the twin as a candump log: tests/data/obd/drive.log.

    .venv/bin/python -m tests.agent.obd.record_drive tests/data/obd/drive.log

The session is what the poller asks on a drive: a scan (ECUs, VIN, bitmaps, codes), then rpm,
speed and fuel level every step while the engine revs up from idle to 3000 rpm, and the fault
codes 03 + 07 each third step: P0301 goes from pending to confirmed (the freeze frame is read
then, as the poller does) and is cleared at the end. Every frame on the bus is written (the
twin's own cyclic frame included), with the bus's own timestamps.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.obd import messages as m
from agent.obd.client import ObdClient
from agent.obd.recorded import CandumpRecorder
from agent.obd.twin import DEMO_FREEZE, TwinEcu
from tests.agent.obd.twin_car import bench

RPMS = (800, 800, 1500, 2200, 3000, 3000, 2600, 900, 0)


def record(path: Path, extended: bool = False) -> int:
    """Write the session to ``path``; the frames written."""
    ecm = TwinEcu(
        0x10 if extended else 0,
        values={0x0C: b"\x0c\x80", 0x0D: b"\x00", 0x2F: b"\x99", 0x05: b"\x5a"},
        vin="VF3REC0RDED000042",
        pending=["P0301"],
        freeze=dict(DEMO_FREEZE),
    )
    tcm = TwinEcu(0x18 if extended else 1, name="TCM-Transmission", values={0x2F: b"\x99"})
    recorder = CandumpRecorder(path, "can0")
    with bench(extended, [ecm, tcm]) as b:
        link = b.link()
        link.mux.tap = recorder.tap
        try:
            link.listen(0.3)
            scan = ObdClient(link, timeout=0.5).scan()
            ecu = scan.ecus[0].ecu
            # physical requests end at the answer: a long timeout costs nothing unless the
            # machine is slow, when it keeps one late answer from ending the recording
            client = ObdClient(link, timeout=3.0)
            for step, rpm in enumerate(RPMS):
                with b.car.lock:
                    ecm.values[0x0C] = (rpm * 4).to_bytes(2, "big")
                    ecm.values[0x0D] = bytes([min(255, rpm // 30)])
                    ecm.values[0x2F] = bytes([0x99 - step])
                    if step == 4:  # the misfire is confirmed
                        ecm.pending, ecm.confirmed = [], ["P0301"]
                    if step == 8:  # and cleared by a workshop
                        ecm.pending, ecm.confirmed = [], []
                client.values(ecu, (0x0C, 0x0D, 0x2F))
                if step % 2 == 0:
                    client.codes(ecu, m.STORED_CODES)
                    client.codes(ecu, m.PENDING_CODES)
                    if step == 4:
                        client.freeze_frame(ecu, 0x02)
                        client.freeze_frame(ecu, 0x0C)
                link.listen(0.2)
        finally:
            link.close()
            recorder.close()
    return recorder.counters["frames"]


if __name__ == "__main__":
    print(record(Path(sys.argv[1]), extended=len(sys.argv) > 2 and sys.argv[2] == "29"))
