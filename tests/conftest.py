"""Fixtures shared by every test package. Area-specific fixtures live in each folder's conftest."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto

# A pytest started as a background job of a non-interactive shell (the clock-ahead runs of
# `make test` run side by side) inherits SIGINT ignored, and so would every process a test starts:
# a test that stops a child with SIGINT, as Ctrl-C does, would wait for ever. Python's own default
# handler here gives the children the default action back (exec resets handled signals).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real anonymous mosquitto on a free loopback port, stopped by PID afterwards."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# Modules whose tests run real processes, certificates and retries on the wall clock. `make test`
# runs them a second and a third time with the clock a month and a year ahead (Debian's
# faketime), so that a test which depends on today's date fails today, not in a year (issue 11).
WALLCLOCK_MODULES = frozenset(
    {
        "tests/agent/uplink/test_uplink_pump_acl.py",
        "tests/agent/daemon/test_daemon_hostile_monitors.py",
        "tests/agent/uplink/test_uplink_outbox.py",
        "tests/agent/daemon/test_daemon_process.py",
        "tests/agent/daemon/test_daemon_live_status.py",
        "tests/agent/uplink/test_uplink_mqtt_tls.py",
        "tests/agent/gps/test_gps_source.py",
        "tests/agent/monitors/test_monitors_cli.py",
        "tests/backend/delivery/test_backend_delivery.py",
        "tests/backend/test_backend_health.py",
        "tests/backend/api/test_backend_read_api.py",
        "tests/deploy/test_docs_consumer.py",
        "tests/backend/delivery/test_backend_circuit_live.py",
        "tests/backend/api/test_backend_expression_dos.py",
        "tests/backend/test_backend_hostile.py",
        "tests/backend/test_backend_poison.py",
        "tests/backend/api/test_backend_live_api.py",
        "tests/backend/test_backend_process.py",
        "tests/backend/test_backend_scaleout.py",
        "tests/backend/delivery/test_backend_signing.py",
        "tests/backend/api/test_backend_tenancy_live.py",
        "tests/deploy/test_broker_acl.py",
        "tests/deploy/test_broker_config.py",
        "tests/e2e/test_e2e_chain.py",
        "tests/e2e/test_e2e_demo.py",
        "tests/e2e/test_e2e_obd.py",
        "tests/e2e/test_e2e_receiver.py",
        "tests/e2e/test_e2e_simulate.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(ROOT).as_posix() in WALLCLOCK_MODULES:
            item.add_marker(pytest.mark.wallclock)
