"""Configuration: the example loads; every problem is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.__main__ import main
from backend.config import LimitsConfig, config_from_dict, load_config
from backend.delivery.endpoints import EndpointLimit
from backend.errors import ConfigError
from tests.backend.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_loads() -> None:
    config = load_config(ROOT / "backend.example.toml")
    assert config.api.port == 8080
    operator, fleet_ops, dashboard = config.api.tokens
    assert operator.admin and not fleet_ops.admin and not dashboard.admin
    assert fleet_ops.fleets == dashboard.fleets == {"fleet-ops"}
    assert config.webhooks.allow_insecure_http is False
    assert config.dispatcher.max_age == 259200
    assert config.store_path == ROOT / "var" / "backend.db"


def test_every_problem_is_reported(tmp_path: Path) -> None:
    raw = {
        "api": {"port": "80", "tokens": [{"token": "short", "scopes": ["everything"]}]},
        "webhooks": {"default_secret": "nope", "timeout": -1},
        "mqtt": {"ca_file": "missing.pem"},
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, tmp_path)
    paths = {p.path for p in info.value.problems}
    assert paths >= {
        "$.store.path",
        "$.api.port",
        "$.api.tokens[0].token",
        "$.api.tokens[0].scopes",
        "$.webhooks.default_secret",
        "$.webhooks.timeout",
        "$.mqtt.ca_file",
    }


def test_cli_check_reports_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "backend.toml"
    bad.write_text("[store]\n")
    assert main(["check", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgemon-backend: ") and "$.store.path" in err
    assert main(["check", "-c", str(ROOT / "backend.example.toml")]) == 0


def test_client_choice_is_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    base = {"store": {"path": "b.db"}, "webhooks": {"default_secret": SECRET}}
    assert config_from_dict(base, tmp_path).webhooks.client == "aiohttp"
    assert "deprecated" not in caplog.text
    for retired in ("httpx", "builtin"):  # the senders before issue 14 still load, mapped
        chosen = {**base, "webhooks": {"default_secret": SECRET, "client": retired}}
        assert config_from_dict(chosen, tmp_path).webhooks.client == "aiohttp"
        assert f"client = '{retired}' is deprecated" in caplog.text
    wrong = {**base, "webhooks": {"default_secret": SECRET, "client": "curl"}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(wrong, tmp_path)
    assert [p.path for p in info.value.problems] == ["$.webhooks.client"]


def test_limits_have_defaults_and_are_checked(tmp_path: Path) -> None:
    base = {"store": {"path": "b.db"}, "webhooks": {"default_secret": SECRET}}
    limits = config_from_dict(base, tmp_path).limits
    assert limits == LimitsConfig()
    assert limits.max_request_bytes == 1_048_576 and limits.ingest_queue == 2_000
    example = load_config(ROOT / "backend.example.toml").limits
    assert example == LimitsConfig()  # the example documents the defaults
    chosen = {**base, "limits": {"max_event_bytes": 1024, "vehicle_rate": 2}}
    assert config_from_dict(chosen, tmp_path).limits.vehicle_rate == 2.0
    assert config_from_dict(chosen, tmp_path).limits.max_event_bytes == 1024
    wrong = {**base, "limits": {"max_json_depth": 0, "ingest_queue": "big", "vehicle_burst": -1}}
    with pytest.raises(ConfigError) as info:
        config_from_dict(wrong, tmp_path)
    assert {p.path for p in info.value.problems} == {
        "$.limits.max_json_depth",
        "$.limits.ingest_queue",
        "$.limits.vehicle_burst",
    }


def test_delivery_at_scale_keys_have_defaults_and_are_checked(tmp_path: Path) -> None:
    base = {"store": {"path": "b.db"}, "webhooks": {"default_secret": SECRET}}
    config = config_from_dict(base, tmp_path)
    assert config.webhooks.per_endpoint_rate == 0.0  # no rate limit unless configured
    assert config.webhooks.breaker is not None and config.webhooks.breaker.failures == 5
    assert config.retention.delivered == 7 * 86400 and config.retention.dead == 30 * 86400
    hooks = {"default_secret": SECRET, "per_endpoint_rate": 20, "per_endpoint_burst": 40}
    tuned = config_from_dict(
        {**base, "webhooks": {**hooks, "breaker_failures": 0}, "retention": {"batch": 10}},
        tmp_path,
    )
    assert tuned.webhooks.per_endpoint_rate == 20.0 and tuned.webhooks.per_endpoint_burst == 40
    assert tuned.webhooks.breaker is None and tuned.retention.batch == 10
    bad = {
        **base,
        "webhooks": {
            "default_secret": SECRET,
            "per_endpoint_rate": -1,
            "breaker_failures": -2,
            "breaker_cooldown": 60,
            "breaker_max_cooldown": 30,
        },
        "retention": {"delivered": 60, "dead": 0, "batch": "many"},
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict(bad, tmp_path)
    assert {p.path for p in info.value.problems} == {
        "$.webhooks.per_endpoint_rate",
        "$.webhooks.breaker_failures",
        "$.webhooks.breaker_max_cooldown",
        "$.retention.delivered",
        "$.retention.dead",
        "$.retention.batch",
    }


def test_an_endpoint_configured_by_name_has_its_own_limits(tmp_path: Path) -> None:
    hooks = {
        "default_secret": SECRET,
        "per_endpoint_concurrency": 4,
        "endpoints": {
            "https://Hooks.Example.com": {"concurrency": 32},
            "https://slow.example:8443/": {"rate": 2.5, "burst": 5},
        },
    }
    config = config_from_dict({"store": {"path": "b.db"}, "webhooks": hooks}, tmp_path)
    assert config.webhooks.endpoints == {
        "https://hooks.example.com:443": EndpointLimit(32, 0.0, 32),
        "https://slow.example:8443": EndpointLimit(4, 2.5, 5),
    }
    bad = {
        "default_secret": SECRET,
        "endpoints": {
            "hooks.example.com": {},
            "https://h.example/path": {},
            "https://ok.example": {"concurrency": 0, "rate": -1},
        },
    }
    with pytest.raises(ConfigError) as info:
        config_from_dict({"store": {"path": "b.db"}, "webhooks": bad}, tmp_path)
    assert {p.path for p in info.value.problems} == {
        "$.webhooks.endpoints.hooks.example.com",
        "$.webhooks.endpoints.https://h.example/path",
        "$.webhooks.endpoints.https://ok.example.concurrency",
        "$.webhooks.endpoints.https://ok.example.rate",
    }
