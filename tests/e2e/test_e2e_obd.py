"""OBD-II end to end: a monitor on an OBD PID and one on a new confirmed fault code (with its
freeze frame) each deliver a signed webhook, through the real mosquitto (TLS, ACL), backend and
HTTPS receiver.

The agent process hosts the ECU twin on its in-process virtual bus (``tests.e2e.obd_agent``);
the monitors are created through the backend API, so the backend validates OBD data names too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.chain import ROOT, Chain, pid_alive
from tests.e2e.schemas import errors


def _monitor(
    label: str, trigger: dict[str, Any], target: str, extended: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "label": label,
        "extendedEventParam": list(extended),
        "subscribeParam": {
            "retryPolicy": {"policy": "Always", "retryDelay": 1},
            "callback": {"webhook": {"name": label, "target": target}},
        },
        "triggerParam": {"triggers": [{"name": "t", "data": trigger}], "boolExp": "t"},
    }


class ObdChain(Chain):
    """The chain with an agent polling OBD-II instead of replaying a drive."""

    def _agent_argv(self) -> list[str]:
        config = self.workdir / "agent.toml"
        ident = self.identity
        config.write_text(
            f'vin = "{ident.vin}"\nfleet_id = "{ident.fleet_id}"\n'
            f'state_dir = "agent-state"\nclock = "system"\nlog_level = "{self.log_level}"\n'
            '[[can]]\nname = "can0"\ninterface = "virtual"\nchannel = "edgemon-obd-can"\n'
            f'dbc = ["{ROOT / "dbc" / "demo_vehicle.dbc"}"]\n'
            f'signal_map = "{ROOT / "dbc" / "demo_vehicle.map.toml"}"\n'
            '[[obd]]\nname = "obd"\ninterface = "virtual"\nchannel = "edgemon-obd"\n'
            "requests_per_second = 5.0\npid_period = 0.5\ncodes_period = 0.5\n"
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.cert_port}\ntls = true\n'
            f'ca_file = "{self.pki.ca_file}"\ncert_file = "{self.vehicle_cert}"\n'
            f'key_file = "{self.vehicle_key}"\nreconnect_max = 2.0\n'
        )
        (self.workdir / "agent-state").mkdir(exist_ok=True)
        flag = self.workdir / "confirm-fault"
        return [
            sys.executable,
            str(Path(__file__).with_name("obd_agent.py")),
            str(config),
            str(flag),
        ]


@pytest.fixture
def obd_chain(tmp_path: Path) -> Iterator[ObdChain]:
    whole = ObdChain(tmp_path, log_level="debug")
    started: list[int] = []
    try:
        whole.start_services()
        yield whole
        started = whole.pids()
    finally:
        started += whole.pids()
        whole.stop()
    assert not [pid for pid in started if pid_alive(pid)], "a process outlived the chain"


def _events(chain: Chain, monitor_id: str) -> list[dict[str, Any]]:
    return [
        event
        for note in chain.receiver.notifications()
        if note.body["monitorId"] == monitor_id
        for event in note.events
    ]


def _scanned(chain: Chain) -> list[dict[str, Any]]:
    """Capability manifests seen that carry an OBD scan."""
    assert chain.observer is not None
    found = [s.json() for s in chain.observer.seen("/capabilities") if s.payload]
    return [m for m in found if m["obd"]]


def _literal(value: dict[str, Any]) -> str:
    return str(value["value"]["body"]["literalValue"])


def test_obd_pid_and_new_fault_code_monitors_deliver_webhooks(obd_chain: ObdChain) -> None:
    chain = obd_chain
    url = chain.receiver.url
    rpm = chain.create_monitor(
        _monitor("Engine above 1500 rpm", {"data": "obd.engine.rpm", "op": "greaterThan",
                                            "value": ["1500"]}, f"{url}/hooks/rpm")
    )  # fmt: skip
    fault = chain.create_monitor(
        _monitor("New confirmed fault code", {"data": "obd.dtc.new", "op": "onChange"},
                 f"{url}/hooks/fault", ("vehicle.telemetry.obd.dtc.freeze",))
    )  # fmt: skip
    rate = chain.create_monitor(
        _monitor("Fuel rate", {"data": "obd.fuel.rate", "op": "greaterThan", "value": ["20"]},
                 f"{url}/hooks/rate")
    )  # fmt: skip
    chain.start_agent()
    chain.wait_for(chain.monitors_applied, 30, "the monitors to be applied", chain.agent)
    chain.wait_for(lambda: _events(chain, rpm), 30, "the rpm webhook", chain.agent)
    values = {v["data"]: _literal(v) for v in _events(chain, rpm)[0]["values"]}
    assert float(values["obd.engine.rpm"]) == 1726.0
    log = chain.agent.log_path
    baseline = "OBD fault code P0301 on 7E8: pending"  # the first read: pending only
    chain.wait_for(
        lambda: baseline in log.read_text(), 30, "the first fault code read", chain.agent
    )
    assert _events(chain, fault) == []  # no event for a pending code
    (chain.workdir / "confirm-fault").touch()
    chain.wait_for(lambda: _events(chain, fault), 30, "the fault code webhook", chain.agent)
    event = _events(chain, fault)[0]
    assert [(v["data"], _literal(v)) for v in event["values"]] == [("obd.dtc.new", "P0301")]
    # the ECU's freeze frame, read before the code counted as new, rides with the event
    frozen = {"obd.dtc.freeze.code": "P0301", "obd.dtc.freeze.coolantTemp": 83.0,
              "obd.dtc.freeze.rpm": 750.0, "obd.dtc.freeze.speed": 0.0}  # fmt: skip
    assert event["extensions"] == [{"type": "vehicle.telemetry.obd.dtc.freeze", "body": frozen}]
    assert "OBD fault code P0301 on 7E8: confirmed" in log.read_text()
    # the capability manifest (retained) says what this car can serve; the backend warns about
    # the monitor that needs the fuel rate this car does not offer
    assert chain.observer is not None
    chain.wait_for(lambda: _scanned(chain), 10, "the manifest after the OBD scan")
    manifest = _scanned(chain)[0]
    assert errors("capabilities", manifest) == []
    assert {"obd.engine.rpm", "vehicle.odometer", "obd.dtc.new"} <= set(manifest["dataNames"])
    assert "obd.fuel.rate" not in manifest["dataNames"]
    assert manifest["obd"]["obd"]["vin"] == "VF3DEMO0000000042"
    backend_log = chain.backend.log_path
    warning = f"monitor {rate} needs obd.fuel.rate, which vehicle {chain.identity.vin} cannot give"
    chain.wait_for(lambda: warning in backend_log.read_text(), 10, "the backend's warning")
    assert _events(chain, rate) == []
