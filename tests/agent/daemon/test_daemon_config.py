"""agent.config: a full example loads; every problem is reported at once; paths resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import ConfigError


def _write(folder: Path, text: str) -> Path:
    path = folder / "agent.toml"
    path.write_text(text)
    return path


def test_full_config_loads_and_resolves_paths(tmp_path: Path) -> None:
    (tmp_path / "dbc").mkdir()
    (tmp_path / "dbc" / "car.dbc").write_text('VERSION ""\n')
    (tmp_path / "dbc" / "car.map.toml").write_text("")
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "monitors.json").write_text("[]")
    path = _write(
        tmp_path,
        """
vin = "VF3ABCDEF12345678"
fleet_id = "fleet-1"
monitors_file = "monitors.json"
clock = "gps"
log_level = "DEBUG"
state_dir = "state"

[[can]]
name = "body"
interface = "socketcan"
channel = "can0"
bitrate = 500000
fd = true
data_bitrate = 2000000
dbc = ["dbc/car.dbc"]
signal_map = "dbc/car.map.toml"

[gps]
port = "socket://127.0.0.1:5000"
baudrate = 4800

[mqtt]
host = "broker.example"
protocol = "3.1.1"
ca_file = "ca.pem"
username = "car"
password_file = "secret"
topic_prefix = "fleet/v1"

[outbox]
max_events = 10
max_age_hours = 2
""",
    )
    config = load_config(path, env={})
    assert config.vin == "VF3ABCDEF12345678"
    assert config.fleet_id == "fleet-1"
    assert config.clock == "gps"
    assert config.log_level == "debug"
    assert config.state_dir == tmp_path / "state"
    assert config.outbox.path == tmp_path / "state" / "outbox.sqlite"
    assert config.outbox.max_events == 10
    assert config.outbox.max_age == 7200.0
    bus = config.buses[0]
    assert config.bus_specs()[0].name == "body"
    assert (bus.name, bus.channel, bus.bitrate, bus.fd, bus.data_bitrate) == (
        "body",
        "can0",
        500000,
        True,
        2000000,
    )
    assert config.bus_specs()[0].dbc_files == (tmp_path / "dbc" / "car.dbc",)
    assert config.bus_specs()[0].signal_map == tmp_path / "dbc" / "car.map.toml"
    assert config.gps is not None and config.gps.baudrate == 4800
    assert config.mqtt.tls is True and config.mqtt.port == 8883
    assert config.mqtt.protocol == "3.1.1"
    assert config.mqtt.password == "s3cret"
    assert "s3cret" not in repr(config.mqtt)
    assert config.topic_prefix == "fleet/v1"
    assert config.monitors_file == tmp_path / "monitors.json"


def test_every_problem_is_listed_together(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
vin = "bad vin/with slash"
clock = "sundial"
colour = "blue"

[[can]]
interface = "socketcan"
dbc = ["missing.dbc"]
data_bitrate = 2000000

[mqtt]
protocol = "4"
port = -1
cert_file = "nope.pem"
password_env = "NOT_SET_ANYWHERE"

[outbox]
synchronous = "sometimes"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    paths = {p.path for p in caught.value.problems}
    assert {
        "$.vin",
        "$.clock",
        "$.colour",
        "$.can[0].channel",
        "$.can[0].dbc[0]",
        "$.can[0].data_bitrate",
        "$.mqtt.protocol",
        "$.mqtt.port",
        "$.mqtt.cert_file",
        "$.mqtt.password_env",
        "$.outbox.synchronous",
    } <= paths
    assert "problem" in str(caught.value)


def test_password_from_environment_and_state_directory(tmp_path: Path) -> None:
    path = _write(tmp_path, 'vin = "V1"\n[mqtt]\npassword_env = "PW"\n')
    config = load_config(path, env={"PW": "from-env", "STATE_DIRECTORY": "/var/lib/edgemon"})
    assert config.mqtt.password == "from-env"
    assert config.outbox.path == Path("/var/lib/edgemon/outbox.sqlite")
    assert config.mqtt.tls is False and config.mqtt.port == 1883


def test_unreadable_and_invalid_toml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "vin = \n"))


def test_example_config_uses_only_known_settings() -> None:
    """docs/agent.example.toml names real files of a gateway; every other setting is valid."""
    import tomllib

    from agent.config import parse_config
    from tests.conftest import ROOT

    example = ROOT / "docs" / "agent.example.toml"
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(example.read_text()), example.parent, env={})
    assert caught.value.problems
    assert all("file not found" in p.message for p in caught.value.problems)


def test_describing_the_configuration_loads_no_adapter() -> None:
    """agent.config builds plain descriptions (agent.source_settings): python-can, cantools and
    pyserial are loaded by the adapters that use them, not to read agent.toml's types."""
    import subprocess
    import sys

    probe = (
        "import sys, agent.config; print(sorted({'can', 'cantools', 'serial'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
