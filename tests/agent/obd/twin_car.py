"""The test car: two ECUs on one in-process python-can ``virtual`` bus (never a network)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import can

from agent.obd.addressing import Addressing
from agent.obd.link import PythonCanLink
from agent.obd.twin import TwinCar, TwinEcu, TwinRunner

VIN = "VF3ABCDEF12345678"


def two_ecus(extended: bool) -> list[TwinEcu]:
    return [
        TwinEcu(
            0x10 if extended else 0,
            values={0x0C: b"\x1a\xf8", 0x0D: b"\x32", 0x2F: b"\x66", 0x42: b"\x30\xd4",
                    0xA6: b"\x00\x01\xe2\x40"},
            vin=VIN,
            confirmed=["P0301"],
            pending=["P0420"],
            freeze={0x05: b"\x7b"},
        ),
        TwinEcu(
            0x18 if extended else 1,
            name="TCM-Transmission",
            values={0x05: b"\x5a", 0x2F: b"\x10"},  # 2F too: only the ECM is asked for it
        ),
    ]  # fmt: skip


@dataclass
class Bench:
    channel: str
    car: TwinCar
    runner: TwinRunner

    def link(self) -> PythonCanLink:
        bus = can.Bus(interface="virtual", channel=self.channel)
        return PythonCanLink(bus, self.car.addressing)


@contextmanager
def bench(extended: bool = False, ecus: list[TwinEcu] | None = None) -> Iterator[Bench]:
    channel = f"obd-{uuid.uuid4().hex}"
    car = TwinCar(ecus if ecus is not None else two_ecus(extended), Addressing(extended))
    runner = TwinRunner(can.Bus(interface="virtual", channel=channel), car).start()
    try:
        yield Bench(channel, car, runner)
    finally:
        runner.stop()
        runner.mux.bus.shutdown()


def wait_for(condition: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll until ``condition()`` holds; a generous bound that only ends a broken test."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)
