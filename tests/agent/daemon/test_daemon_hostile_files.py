"""Files from outside and files the agent makes (issue 12): agent.toml that is hostile gives a
ConfigError listing the problem (never a traceback); the outbox is 0600; secrets have no repr."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import MAX_CONFIG_BYTES, load_config
from agent.errors import ConfigError
from agent.uplink.outbox import Outbox
from tests.agent.daemon.conftest import make_event
from tests.conftest import ROOT

HOSTILE_TOML = {
    "deep arrays": ('vin = "A"\nx = ' + "[" * 5000 + "]" * 5000, "too deep"),
    "deep tables": ('vin = "A"\nx = ' + "{a=" * 2000 + "1" + "}" * 2000, "too deep"),
    "NUL in a path": ('vin = "A"\nstate_dir = "a\\u0000b"', "$.state_dir: must not contain a NUL"),
    "NUL in the GPS port": ('vin = "A"\n[gps]\nport = "x\\u0000"', "$.gps.port"),
    "unknown user": ('vin = "A"\nmonitors_file = "~no-such-user-x/m.json"', "cannot expand"),
    "NaN": ('vin = "A"\n[mqtt]\nreconnect_min = nan', "$.mqtt.reconnect_min: must be positive"),
    "infinite age": ('vin = "A"\n[outbox]\nmax_age_hours = inf', "must be at most"),
    "keepalive": ('vin = "A"\n[mqtt]\nkeepalive = 99999999999999999999', "at most 65535"),
    "NaN replay": ('vin = "A"\n[[can]]\nchannel = "c"\nreplay_speed = nan', "replay_speed"),
    "not UTF-8": ('vin = "\udcff"', "not valid TOML"),
    "password file": ('vin = "A"\n[mqtt]\npassword_file = "pw"', "$.mqtt.password_file"),
    "huge": ('vin = "A"\n#' + "x" * MAX_CONFIG_BYTES, "larger than"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_TOML))
def test_hostile_config_is_a_config_error(tmp_path: Path, case: str) -> None:
    text, expected = HOSTILE_TOML[case]
    (tmp_path / "pw").write_bytes(b"\xff\xfe\x00")
    path = tmp_path / "agent.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert expected in str(caught.value)
    assert caught.value.problems


def test_hostile_config_exits_2_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('vin = "A"\nx = ' + "[" * 5000 + "]" * 5000)
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "run", "-c", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "too deep" in proc.stderr and "Traceback" not in proc.stderr


def test_outbox_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
        outbox.append([make_event(outbox.next())], 1.0)
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (tmp_path / "state").iterdir()}
        outbox.close()
    finally:
        os.umask(old)
    assert set(modes) >= {"outbox.sqlite", "outbox.sqlite-wal"}
    assert set(modes.values()) == {0o600}, modes
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_an_existing_world_readable_outbox_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    path.chmod(0o644)
    Outbox(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_mqtt_password_has_no_repr_and_is_not_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "pw").write_text("pa55-w0rd-xyz\n")
    path = tmp_path / "agent.toml"
    path.write_text('vin = "A"\n[mqtt]\nusername = "u"\npassword_file = "pw"\n')
    with caplog.at_level(logging.DEBUG):
        config = load_config(path, env={})
    assert config.mqtt.password == "pa55-w0rd-xyz"
    assert "pa55-w0rd-xyz" not in repr(config) and "pa55-w0rd-xyz" not in str(config)
    assert "pa55-w0rd-xyz" not in caplog.text
