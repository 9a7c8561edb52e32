"""Fuzz: ``agent.toml`` with every known setting given arbitrary values (and unknown ones, deep
arrays, NUL characters, NaN, huge integers), and arbitrary bytes. ``load_config`` returns a
configuration or raises ``ConfigError`` with its problems, nothing else."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from agent.config import _CAN_KEYS, _MQTT_KEYS, _TOP_KEYS, AgentConfig, load_config
from agent.errors import ConfigError
from tests.agent.fuzz.fuzz_support import FUZZ_SETTINGS, files_in

TABLE_KEYS = {
    "mqtt": sorted(_MQTT_KEYS),
    "outbox": ["path", "max_events", "max_bytes", "max_age_hours", "synchronous"],
    "gps": ["port", "baudrate", "replay_pace", "replay_speed"],
}
SCALAR_KEYS = sorted(_TOP_KEYS - {"can", "gps", "mqtt", "outbox"})


def _float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON escapes are TOML basic-string escapes (or rejected)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


values = st.recursive(
    st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["", "~", "~nobody-here/x", "a\x00b", "5", "3.1.1", "vcan0", "/dev/null"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = ['vin = "VF3FUZZ0000000001"'] if draw(st.booleans()) else []
    for key in draw(st.lists(st.sampled_from([*SCALAR_KEYS, "zz"]), max_size=4, unique=True)):
        lines.append(f"{key} = {toml_value(draw(values))}")
    for table, keys in TABLE_KEYS.items():
        if draw(st.booleans()):
            lines.append(f"[{table}]")
            for key in draw(st.lists(st.sampled_from(keys), max_size=5, unique=True)):
                lines.append(f"{key} = {toml_value(draw(values))}")
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[can]]")
        for key in draw(st.lists(st.sampled_from(sorted(_CAN_KEYS)), max_size=5, unique=True)):
            lines.append(f"{key} = {toml_value(draw(values))}")
    return "\n".join(lines) + "\n"


def check_load(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="edgemon-fuzz-") as folder:
        path = Path(folder) / "agent.toml"
        path.write_bytes(data)
        try:
            config = load_config(path, env={})
        except ConfigError as exc:
            assert exc.problems and str(exc)
        else:
            assert isinstance(config, AgentConfig) and config.vin


@FUZZ_SETTINGS
@given(documents())
@example('vin = "A"\n[mqtt]\nport = 1e400\nkeepalive = -0.0\n')
@example('vin = "A"\n[[can]]\nchannel = "c"\nbitrate = 99999999999999999999999999\n')
def test_fuzzed_settings_give_config_errors(text: str) -> None:
    check_load(text.encode("utf-8", "surrogatepass"))


@FUZZ_SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_config_errors(data: bytes) -> None:
    check_load(data)


def test_regression_configs() -> None:
    cases = files_in("config")
    assert cases
    for path in cases:
        check_load(path.read_bytes())
