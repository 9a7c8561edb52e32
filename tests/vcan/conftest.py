"""The `vcan` marker and fixture: SocketCAN tests run where SocketCAN exists.

On a host with vcan0 the test bodies run here. Otherwise one throwaway QEMU VM per session
(scripts/vcan_vm.py) runs every selected `vcan` test in one guest pytest, and each host-side
test reports the guest's outcome of its own node id (the body does not run on the host). With
neither, they skip saying why. See docs/vcan.md.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts import vcan_vm
from tests.vcan.harness import Outcome, VcanBus, Where, merge_reports, probe_host
from tests.vcan.harness import where_from_environment as _where_from_environment

RESULTS_ENV = "EDGEMON_VCAN_RESULTS"
SELECT_ENV = "EDGEMON_VCAN_SELECT"
GUEST_TEST_TIMEOUT = 180
OUTCOME_KEY = pytest.StashKey[Outcome]()
HERE = "tests/vcan/"
UNUSED_PLUGINS = ("cacheprovider", "doctest", "legacypath", "pastebin", "junitxml", "debugging")
HOST_SIDE_FIXTURES = frozenset({"request", "_vcan_gate", "vcan_where", "vcan"})


@dataclass
class VmSession:
    outcomes: dict[str, Outcome]
    console: str
    seconds: float
    build_seconds: float
    exit_code: int | None
    timed_out: bool


_SUMMARY: list[str] = []


def _not_here(reason: str) -> None:
    if os.environ.get("EDGEMON_VCAN_REQUIRE") == "1":
        pytest.fail(f"EDGEMON_VCAN_REQUIRE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _where() -> Where:
    return _where_from_environment()


@pytest.fixture(scope="session")
def vcan_where() -> Where:
    return _where()


def _vcan_items(items: list[pytest.Item]) -> list[pytest.Item]:
    return [i for i in items if i.get_closest_marker("vcan") and i.nodeid.startswith(HERE)]


def _guest_script(nodeids: list[str]) -> str:
    files = sorted({nodeid.split("::", 1)[0] for nodeid in nodeids})
    # No plugin autoload and no unused builtin plugins: every import costs under TCG.
    argv = ["python", "-m", "pytest", "-p", "pytest_timeout"]
    for plugin in UNUSED_PLUGINS:
        argv += ["-p", f"no:{plugin}"]
    argv += [
        "-m",
        "vcan",
        "-q",
        "-rfEs",
        "--durations=0",
        "--color=no",
        f"--timeout={GUEST_TEST_TIMEOUT}",
        *files,
    ]
    return (
        vcan_vm.job_prelude()
        + f"export {RESULTS_ENV}=/tmp/job/results.jsonl {SELECT_ENV}=/tmp/job/select.txt\n"
        + "export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1\n"
        + 'echo "vcan-vm: pytest starts at uptime $(cut -d" " -f1 /proc/uptime) s"\n'
        + shlex.join(argv)
        + "\ncode=$?\n"
        + 'echo "vcan-vm: pytest ended at uptime $(cut -d" " -f1 /proc/uptime) s"\n'
        + "exit $code\n"
    )


def _vm_timeout(config: pytest.Config) -> float:
    """The VM's global limit, kept below pytest-timeout's limit for the test that boots it
    (so QEMU is killed by us, by PID, and the failure says why)."""
    limit = vcan_vm.DEFAULT_TIMEOUT
    try:
        per_test = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    except (ValueError, TypeError):
        per_test = 0.0
    return min(limit, per_test - 30) if per_test > 60 else limit


@pytest.fixture(scope="session")
def vcan_vm_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> VmSession:
    """Boot the VM once and run every selected `vcan` test of tests/vcan in it."""
    nodeids = [item.nodeid for item in _vcan_items(request.session.items)]
    started = time.monotonic()
    try:
        image = vcan_vm.build(progress=lambda _line: None)
    except vcan_vm.VmUnavailable as exc:
        _SUMMARY.append(f"vcan VM: could not be built: {exc}")
        _not_here(f"no SocketCAN on this host and the vcan VM could not be built: {exc}")
    build_seconds = time.monotonic() - started
    job = tmp_path_factory.mktemp("vcan-vm") / "job"
    job.mkdir()
    (job / "select.txt").write_text("\n".join(nodeids) + "\n")
    run = vcan_vm.run(image, _guest_script(nodeids), job, timeout=_vm_timeout(request.config))
    results = job / "results.jsonl"
    lines = [json.loads(x) for x in results.read_text().splitlines()] if results.is_file() else []
    session = VmSession(
        outcomes=merge_reports(lines),
        console=run.console,
        seconds=run.seconds,
        build_seconds=build_seconds,
        exit_code=run.exit_code,
        timed_out=run.timed_out,
    )
    counts = {
        kind: sum(o.outcome == kind for o in session.outcomes.values())
        for kind in ("passed", "failed", "skipped")
    }
    _SUMMARY.append(
        f"vcan VM ({image.release}, TCG): {len(nodeids)} tests sent, {counts}; "
        f"build/cache check {build_seconds:.1f} s, VM run {run.seconds:.1f} s, "
        f"guest exit code {run.exit_code}{' (TIMED OUT, QEMU killed)' if run.timed_out else ''}"
    )
    return session


def _vm_outcome(request: pytest.FixtureRequest) -> Outcome:
    session: VmSession = request.getfixturevalue("vcan_vm_session")
    outcome = session.outcomes.get(request.node.nodeid)
    if outcome is not None:
        return outcome
    why = "the VM timed out and was killed" if session.timed_out else "no result from the VM"
    pytest.fail(
        f"{why} for this test (guest exit code {session.exit_code}); "
        f"console tail:\n{session.console[-3000:]}",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _vcan_gate(request: pytest.FixtureRequest, vcan_where: Where) -> None:
    """For `vcan` tests: skip when SocketCAN is nowhere; in VM mode fetch the guest's verdict."""
    if request.node.get_closest_marker("vcan") is None:
        return
    if vcan_where.mode == "skip":
        _not_here(vcan_where.reason)
    if vcan_where.mode != "vm":
        return
    outcome = _vm_outcome(request)
    if outcome.outcome == "skipped":
        pytest.skip(f"skipped in the vcan VM: {outcome.text}")
    request.node.stash[OUTCOME_KEY] = outcome


@pytest.fixture
def vcan(vcan_where: Where) -> VcanBus:
    """The SocketCAN interfaces to use. In VM mode on the host, the body never runs."""
    if vcan_where.mode == "vm":
        return VcanBus(classic="vcan0", fd="vcan1", admin=True, where="vm")
    host = probe_host(create=False)
    if host.classic is None:
        pytest.fail(f"SocketCAN vanished: {host.reason}", pytrace=False)
    return VcanBus(classic=host.classic, fd=host.fd, admin=host.admin, where=vcan_where.mode)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """In VM mode the host reports the guest's outcome instead of running the body."""
    outcome = pyfuncitem.stash.get(OUTCOME_KEY, None)
    if outcome is None:
        return None
    if outcome.outcome == "failed":
        pytest.fail(f"failed in the vcan VM:\n{outcome.text}", pytrace=False)
    return True


def _host_side_only_gate_fixtures(items: list[pytest.Item]) -> None:
    """In VM mode the host must not set up a vcan test's other fixtures (buses, brokers...):
    the body runs in the guest. Prune each such item's fixture closure to the gate fixtures."""
    chosen = _vcan_items(items)
    if not chosen or _where().mode != "vm":
        return
    for item in chosen:
        if isinstance(item, pytest.Function):
            item.fixturenames[:] = [n for n in item.fixturenames if n in HOST_SIDE_FIXTURES]


# ------------------------------------------------------------- guest side (EDGEMON_IN_VM=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EDGEMON_IN_VM") != "1":
        _host_side_only_gate_fixtures(items)
        return
    select = os.environ.get(SELECT_ENV)
    if not select:
        return
    wanted = set(Path(select).read_text().split("\n"))
    keep = [item for item in items if item.nodeid in wanted]
    dropped = [item for item in items if item.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _guest_mark(what: str) -> None:
    """A timeline line on the VM's console (guest uptime), to see where the time goes."""
    if os.environ.get("EDGEMON_IN_VM") == "1":
        uptime = Path("/proc/uptime").read_text().split()[0]
        print(f"\nvcan-vm: {what} at uptime {uptime} s", flush=True)


def pytest_configure(config: pytest.Config) -> None:
    _guest_mark("pytest configured")


def pytest_collection_finish(session: pytest.Session) -> None:
    _guest_mark(f"{len(session.items)} tests collected")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    target = os.environ.get(RESULTS_ENV)
    if not target or os.environ.get("EDGEMON_IN_VM") != "1":
        return
    if report.skipped and isinstance(report.longrepr, tuple):
        text = str(report.longrepr[2])
    else:
        text = report.longreprtext if report.failed else ""
    line = {
        "nodeid": report.nodeid,
        "phase": report.when,
        "outcome": report.outcome,
        "text": text,
        "seconds": report.duration,
    }
    with Path(target).open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line)
