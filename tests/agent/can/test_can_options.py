"""``[can.options]`` reaches python-can: validated in the configuration (every problem at once),
then used by a real socketcand client against a socketcand server on loopback, and by python-can's
slcan interface on a pty that a test thread answers as an slcan adapter would."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.can.source import CanSource
from agent.config import AgentConfig, load_config
from agent.errors import ConfigError
from agent.model import Frame
from agent.simulate.sinks import SocketcandServer

WAIT_S = 20.0  # an upper bound on waiting for a shared, slow machine; never asserted on


def config_with(tmp_path: Path, can_table: str) -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(f'vin = "VF3TEST0000000001"\n\n[[can]]\n{can_table}\n', encoding="utf-8")
    return load_config(path, env={})


def problems_of(tmp_path: Path, can_table: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, can_table)
    return {p.path: p.message for p in caught.value.problems}


def test_options_table_is_read_into_the_bus_config(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        'interface = "socketcand"\nchannel = "can0"\n\n'
        '[can.options]\nhost = "127.0.0.1"\nport = 29536\ntcp_tune = true\n',
    )
    assert dict(config.buses[0].options) == {"host": "127.0.0.1", "port": 29536, "tcp_tune": True}


def test_every_option_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        'interface = "slcan"\nchannel = "/dev/ttyACM0"\nhost = "x"\n\n'
        '[can.options]\ntty_baudrate = "fast"\nbitrate = 500000\ncan_filters = 1\n'
        "rtscts = [1, 2]\n",
    )
    assert found == {
        "$.can[0].host": "unknown setting (interface options go in [can.options])",
        "$.can[0].options.tty_baudrate": "expected int, got str",
        "$.can[0].options.bitrate": "set by edgemon: use bitrate in [[can]]",
        "$.can[0].options.can_filters": (
            "set by edgemon: computed from the signals the monitors use"
        ),
        "$.can[0].options.rtscts": "expected text, a number or true/false",
    }


def test_required_option_and_unknown_interface_are_named(tmp_path: Path) -> None:
    found = problems_of(tmp_path, 'interface = "socketcand"\nchannel = "can0"\n')
    assert found == {
        "$.can[0].options.host": "required by socketcand",
        "$.can[0].options.port": "required by socketcand",
    }
    found = problems_of(tmp_path, 'interface = "sockercan"\nchannel = "can0"\n')
    assert list(found) == ["$.can[0].interface"]
    assert "unknown python-can interface 'sockercan'" in found["$.can[0].interface"]
    assert "socketcan" in found["$.can[0].interface"]


def receive(source: CanSource, count: int, feed: object = None) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + WAIT_S
    while len(frames) < count and time.monotonic() < deadline:
        if callable(feed):
            feed()
        frame = source.recv(0.2)
        if frame is not None:
            frames.append(frame)
    return frames


@pytest.fixture
def socketcand() -> Iterator[SocketcandServer]:
    server = SocketcandServer("127.0.0.1", 0, channel="can0")
    yield server
    server.close()


def test_socketcand_options_reach_python_can(tmp_path: Path, socketcand: SocketcandServer) -> None:
    host, port = socketcand.address
    config = config_with(
        tmp_path,
        f'interface = "socketcand"\nchannel = "can0"\n\n[can.options]\nhost = "{host}"\n'
        f"port = {port}\n",
    )
    sent = Frame(1.5, 0x123, b"\xaa\xbb", False, False, "can0")
    with CanSource(config.buses[0]) as source:
        frames = receive(source, 3, lambda: socketcand.send(sent))
    assert len(frames) == 3
    assert {(f.arbitration_id, f.data, f.is_extended, f.bus) for f in frames} == {
        (0x123, b"\xaa\xbb", False, "can0")
    }
    assert socketcand.counters["clients"] == 1


class SlcanAdapter:
    """The adapter end of a pty: records the host's commands, sends frames in slcan ASCII."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        self.device = os.ttyname(self._slave)
        self.commands: list[str] = []
        self.opened = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._serve()
        except OSError:  # the pty closed: the test is over
            return

    def _serve(self) -> None:
        buffer = b""
        while not self._stop:
            buffer += os.read(self.master, 256)
            while b"\r" in buffer:
                command, _, buffer = buffer.partition(b"\r")
                self.commands.append(command.decode("ascii"))
                os.write(self.master, b"\r")  # an adapter acknowledges every command
                if command == b"O":
                    self.opened.set()

    def send(self, text: str) -> None:
        os.write(self.master, text.encode("ascii") + b"\r")

    def close(self) -> None:
        self._stop = True
        os.close(self._slave)  # the reader's next read fails with EIO and it ends
        self._thread.join(WAIT_S)
        os.close(self.master)


@pytest.fixture
def slcan_adapter() -> Iterator[SlcanAdapter]:
    adapter = SlcanAdapter()
    yield adapter
    adapter.close()


def test_slcan_options_reach_python_can(tmp_path: Path, slcan_adapter: SlcanAdapter) -> None:
    config = config_with(
        tmp_path,
        f'interface = "slcan"\nchannel = "{slcan_adapter.device}"\nbitrate = 500000\n\n'
        "[can.options]\ntty_baudrate = 921600\nsleep_after_open = 0\n",
    )
    assert config.buses[0].options == {"tty_baudrate": 921600, "sleep_after_open": 0}
    with CanSource(config.buses[0]) as source:
        assert slcan_adapter.opened.wait(WAIT_S)
        assert "S6" in slcan_adapter.commands  # slcan's code for 500 kbit/s
        assert slcan_adapter.commands[-1] == "O"
        slcan_adapter.send("t1232AABB")
        slcan_adapter.send("T1E36001E3010203")
        frames = receive(source, 2)
    assert [(f.arbitration_id, f.data, f.is_extended) for f in frames] == [
        (0x123, b"\xaa\xbb", False),
        (0x1E36001E, b"\x01\x02\x03", True),
    ]


def example_buses() -> list[str]:
    """The commented ``[[can]]`` examples of docs/agent.example.toml, uncommented."""
    text = (Path(__file__).resolve().parents[3] / "docs" / "agent.example.toml").read_text()
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# [[can]]"):
            current = []
            blocks.append("")
        elif current is not None and line.startswith("# ") and line != "#":
            current.append(line[2:])
            blocks[-1] = "\n".join(current)
        else:
            current = None  # a "#" line or real TOML ends the example
    return blocks


def test_documented_interface_examples_are_valid(tmp_path: Path) -> None:
    examples = example_buses()
    assert len(examples) == 4
    interfaces = set()
    for example in examples:
        bus = config_with(tmp_path, example).buses[0]
        interfaces.add(bus.interface)
        assert bus.options
    assert interfaces == {"slcan", "socketcand", "pcan", "gs_usb"}
