"""``[[obd]]`` in agent.toml, and ``check`` saying what monitors cost on the diagnostic bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.__main__ import main
from agent.app import Agent
from agent.config import load_config, parse_config
from agent.errors import ConfigError
from tests.agent.daemon.conftest import agent_toml
from tests.e2e.schemas import errors


def test_obd_tables_are_read_with_defaults(tmp_path: Path) -> None:
    config = parse_config(
        {"vin": "VF3X", "obd": [{"channel": "can0", "record": "drive.log"},
                                {"name": "b", "channel": "can1",
                                  "addressing": "29", "transport": "kernel",
                                  "requests_per_second": 0.5, "scan_cache_age": 0}]},
        tmp_path,
    )  # fmt: skip
    first, second = config.obd
    assert (first.name, first.extended, first.requests_per_second) == ("can0", False, 1.0)
    assert (first.scan_cache_age, second.scan_cache_age) == (7 * 86400.0, 0.0)
    assert (first.record, second.record) == (tmp_path / "drive.log", None)
    assert (second.extended, second.transport, second.requests_per_second) == (True, "kernel", 0.5)


def test_obd_problems_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"vin": "VF3X", "obd": [{"channel": "", "addressing": "16", "transport": "usb",
                                      "requests_per_second": 50.0, "pid_period": -1.0,
                                      "scan_cache_age": -1, "colour": "red"}]},
            tmp_path,
        )  # fmt: skip
    paths = {p.path for p in caught.value.problems}
    keys = ("channel", "addressing", "transport", "requests_per_second", "pid_period", "colour",
            "scan_cache_age")  # fmt: skip
    assert {f"$.obd[0].{key}" for key in keys} <= paths


def _monitor(ident: str, data: str, op: str, value: list[str]) -> dict[str, object]:
    trigger = {"data": data, "op": op, "value": value} if value else {"data": data, "op": op}
    return {
        "id": ident,
        "label": ident,
        "triggerParam": {"triggers": [{"name": "t", "data": trigger}], "boolExp": "t"},
        "subscribeParam": {"callback": {"webhook": {"target": "https://h.example/x", "name": "n"}}},
    }


def test_check_accepts_obd_names_and_says_what_they_cost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monitors = tmp_path / "monitors.json"
    monitors.write_text(
        json.dumps(
            [
                _monitor("rpm", "obd.engine.rpm", "greaterThan", ["3000"]),
                _monitor("codes", "obd.dtc.new", "onChange", []),
                _monitor("oil", "vehicle.engines.thermic.oil.temp", "greaterThan", ["130"]),
            ]
        )
    )
    config = tmp_path / "agent.toml"
    root = Path(__file__).resolve().parents[3]
    dbc = root / "dbc"
    config.write_text(
        f'vin = "VF3X"\nmonitors_file = "{monitors}"\n'
        f'[[can]]\nchannel = "vcan0"\ndbc = ["{dbc / "demo_vehicle.dbc"}"]\n'
        f'signal_map = "{dbc / "demo_vehicle.map.toml"}"\n'
        '[[obd]]\nname = "diag"\nchannel = "can1"\npid_period = 5.0\ncodes_period = 60.0\n'
    )
    assert main(["check", "--config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "check: 3 of 3 monitor(s) valid, 0 problem(s)" in err
    assert "(rpm): bus diag: PIDs 0C: 12 request(s)/min per ECU" in err
    assert "(codes): bus diag: PIDs none, fault codes: 2 request(s)/min per ECU" in err
    assert "(oil)" not in err  # the oil temperature comes from the CAN bus: free
    assert main(["check", "--config", str(config), "--json"]) == 0
    costs = json.loads(capsys.readouterr().out)["obdCosts"]
    assert [(c["id"], c["bus"], c["pids"], c["faultCodes"], c["requestsPerMinute"])
            for c in costs] == [("rpm", "diag", ["0C"], False, 12.0),
                                ("codes", "diag", [], True, 2.0)]  # fmt: skip
    assert costs[0]["source"].endswith("monitors.json[0]") and costs[0]["per"] == "ECU"


def test_the_agent_status_says_what_each_monitor_costs(tmp_path: Path) -> None:
    monitors = [
        _monitor("rpm", "obd.engine.rpm", "greaterThan", ["3000"]),
        _monitor("codes", "obd.dtc.new", "onChange", []),
        _monitor("oil", "vehicle.engines.thermic.oil.temp", "greaterThan", ["130"]),
    ]
    obd = 'interface = "virtual"\nchannel = "unused"\n[[obd]]\nname = "diag"\n'
    obd += 'interface = "virtual"\nchannel = "obd-unused"'
    path = agent_toml(tmp_path, 1, can=obd, monitors=monitors)
    agent = Agent(load_config(path, env={}))
    try:
        agent._load_local_monitors()
        agent._apply_wanted_names()
        counters = agent.counters()
    finally:
        agent.outbox.close()
    assert counters["obd.diag.monitor.rpm.requests_per_minute"] == 12
    assert counters["obd.diag.monitor.codes.requests_per_minute"] == 2
    assert "obd.diag.monitor.oil.requests_per_minute" not in counters  # from the CAN bus
    assert counters["obd.diag.requests_per_minute"] == 14  # what the poller is asked for now


def test_each_monitor_state_says_what_it_costs(tmp_path: Path) -> None:
    monitors = [
        _monitor("rpm", "obd.engine.rpm", "greaterThan", ["3000"]),
        _monitor("oil", "vehicle.engines.thermic.oil.temp", "greaterThan", ["130"]),
        _monitor("bad", "obd.no.such.name", "greaterThan", ["1"]),
    ]
    obd = 'interface = "virtual"\nchannel = "unused"\n[[obd]]\nname = "diag"\n'
    obd += 'interface = "virtual"\nchannel = "obd-unused"'
    path = agent_toml(tmp_path, 1, can=obd, monitors=monitors)
    agent = Agent(load_config(path, env={}))
    published: dict[str, dict[str, object]] = {}
    agent.sync._publish = lambda topic, payload: published.__setitem__(  # type: ignore[method-assign]
        topic.rsplit("/", 2)[-2], json.loads(payload)
    )
    try:
        agent._load_local_monitors()
    finally:
        agent.outbox.close()
    assert published["rpm"]["obdRequestsPerMinute"] == 12.0
    assert published["oil"]["obdRequestsPerMinute"] == 0.0  # from the CAN bus: free
    assert (
        published["bad"]["state"] == "rejected" and "obdRequestsPerMinute" not in published["bad"]
    )
    assert all(errors("monitor-state", body) == [] for body in published.values())
