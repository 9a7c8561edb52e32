"""``edgemon-agent simulate`` outputs: candump log + NMEA file (byte-identical per seed), a
python-can ``virtual`` bus, a socketcand server read by the agent's own CanSource, NMEA over TCP
and over a pty read with pyserial."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import can
import pytest
import serial

from agent.__main__ import main
from agent.can.dbc import demo_buses, load_vehicle
from agent.can.decode import Decoder
from agent.can.source import BusConfig, CanSource, read_log
from agent.gps.nmea import NmeaParser, read_nmea_file
from agent.model import Fix
from agent.state import VehicleState
from tests.support.mosquitto import free_port

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "scenarios" / "short-drive.toml"
OIL = "vehicle.engines.thermic.oil.temp"


def _simulate_files(tmp: Path, seed: str) -> tuple[Path, Path]:
    tmp.mkdir()
    log, nmea = tmp / f"drive-{seed}.log", tmp / f"drive-{seed}.nmea"
    argv = ["simulate", "--scenario", str(SCENARIO), "--fast", "--seed", seed]
    assert main([*argv, "--can-log", str(log), "--nmea", str(nmea)]) == 0
    return log, nmea


def test_files_are_identical_for_a_seed_and_read_back(tmp_path: Path) -> None:
    log_a, nmea_a = _simulate_files(tmp_path / "a", "11")
    log_b, nmea_b = _simulate_files(tmp_path / "b", "11")
    log_c, _ = _simulate_files(tmp_path / "c", "12")
    assert log_a.read_bytes() == log_b.read_bytes()
    assert nmea_a.read_bytes() == nmea_b.read_bytes()
    assert log_a.read_bytes() != log_c.read_bytes()

    decoder = Decoder(load_vehicle(demo_buses()))
    decoder.use([OIL, "vehicle.powertrain.status"])
    state = VehicleState()
    frames = list(read_log(log_a))
    for frame in frames:
        decoder.feed(frame, state)
    assert len(frames) > 4000
    assert any(f.is_fd for f in frames) and any(f.is_extended for f in frames)
    oil = state.get(OIL)
    assert oil is not None and float(oil.value) > 139
    fixes = list(read_nmea_file(nmea_a))
    assert len(fixes) == 81 and fixes[0].utc is not None
    assert fixes[0].utc.isoformat() == "2026-11-23T22:10:00+00:00"


def test_virtual_bus_receives_every_frame(tmp_path: Path) -> None:
    channel = f"sim-{time.monotonic_ns()}"
    with can.Bus(interface="virtual", channel=channel, receive_own_messages=False) as rx:
        argv = ["simulate", "--scenario", str(SCENARIO), "--fast", "--duration", "2"]
        assert main([*argv, "--can-interface", "virtual", "--can-channel", channel]) == 0
        received = []
        while (msg := rx.recv(0.2)) is not None:
            received.append(msg)
    assert 200 <= len(received) <= 230  # 108 frames per second for 2 s
    assert {m.arbitration_id for m in received} >= {0x0B4, 0x1A0, 0x4C0, 0x18FF50E5}


@pytest.fixture
def live_simulator(tmp_path: Path):  # type: ignore[no-untyped-def]
    can_port, nmea_port = free_port(), free_port()
    argv = [sys.executable, "-m", "agent", "simulate", "--scenario", str(SCENARIO)]
    argv += ["--speed", "8", "--duration", "24", "--start", "now", "--wait-clients", "20"]
    argv += ["--can-socketcand", f"127.0.0.1:{can_port}", "--nmea-tcp", f"127.0.0.1:{nmea_port}"]
    argv += ["--nmea-pty", str(tmp_path / "gps0")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc, can_port, nmea_port, tmp_path / "gps0"
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_live_outputs_reach_the_agent_sources(live_simulator) -> None:  # type: ignore[no-untyped-def]
    proc, can_port, nmea_port, pty_link = live_simulator
    _wait_for(pty_link)
    config = BusConfig(
        "can0", "socketcand", "vcan0", options={"host": "127.0.0.1", "port": can_port}
    )
    decoder = Decoder(load_vehicle(demo_buses()))
    decoder.use([OIL, "vehicle.kinetic.speed"])
    state = VehicleState()
    tcp = serial.serial_for_url(f"socket://127.0.0.1:{nmea_port}", timeout=0)
    pty = serial.Serial(str(pty_link), 9600, timeout=0)
    readers = {"tcp": (tcp, NmeaParser()), "pty": (pty, NmeaParser())}
    fixes: dict[str, list[Fix]] = {"tcp": [], "pty": []}
    frames = 0
    deadline = time.monotonic() + 60
    with CanSource(config) as source:
        while proc.poll() is None or readers:
            assert time.monotonic() < deadline, "the simulator never hung up"
            # Drain CAN in small bites: a pty holds only a few kB and the simulator drops NMEA
            # lines when it is full (as a UART with no reader would), so read it often.
            for _ in range(50):
                if (frame := source.recv(0.01)) is None:
                    break
                frames += 1
                assert abs(frame.timestamp - time.time()) < 5  # wall clock, as a kernel stamps
                decoder.feed(frame, state)
            for name, (port, parser) in list(readers.items()):
                try:
                    fixes[name] += parser.feed(port.read(4096), time.time())
                except serial.SerialException:  # the simulator hung up: the drive is over
                    port.close()
                    del readers[name]
    assert proc.wait(timeout=10) == 0
    assert frames > 1500  # 24 s of drive at ~108 frames/s, 8x faster
    oil = state.get(OIL)
    assert oil is not None and float(oil.value) > 139
    assert len(fixes["tcp"]) >= 45 and len(fixes["pty"]) >= 45  # 49 epochs: 24 s at 2 Hz
    moving = [f.speed_kmh for f in fixes["tcp"] if f.speed_kmh]
    assert moving and max(moving) == pytest.approx(70, abs=0.1)
