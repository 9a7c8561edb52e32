"""Where the vcan tests run, and the pieces of the VM build that need no VM (run on the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.vcan_vm import VmImage, module_order, write_initramfs
from scripts.vcan_vm import run as vm_run
from tests.vcan.harness import HostCan, decide, merge_reports, probe_host
from tests.vcan.vcan_tools import unit_commands

ROOT = Path(__file__).resolve().parents[2]
NO_CAN = HostCan(classic=None, fd=None, admin=False, reason="the kernel has no AF_CAN: nope")
HAS_CAN = HostCan(classic="vcan0", fd="vcan1", admin=False, reason="")
QEMU = "/usr/bin/qemu-system-x86_64"


@pytest.mark.parametrize(
    "case",
    [
        ("auto", True, NO_CAN, "x86_64", None, "guest", "inside"),
        ("auto", False, HAS_CAN, "x86_64", QEMU, "host", "vcan0"),
        ("host", False, HAS_CAN, "aarch64", None, "host", "vcan0"),
        ("auto", False, NO_CAN, "x86_64", QEMU, "vm", "throwaway VM"),
        ("vm", False, HAS_CAN, "x86_64", QEMU, "vm", QEMU),
        ("auto", False, NO_CAN, "x86_64", None, "skip", "no QEMU"),
        ("auto", False, NO_CAN, "aarch64", QEMU, "skip", "needs x86_64 (this is aarch64)"),
        ("host", False, NO_CAN, "x86_64", QEMU, "skip", "EDGEMON_VCAN=host but"),
        ("off", False, HAS_CAN, "x86_64", QEMU, "skip", "EDGEMON_VCAN=off"),
        ("maybe", False, HAS_CAN, "x86_64", QEMU, "skip", "not one of auto, host, vm, off"),
    ],
)
def test_vcan_decide(case: tuple[str, bool, HostCan, str, str | None, str, str]) -> None:
    setting, in_vm, host, machine, qemu, mode, says = case
    where = decide(setting, in_vm, host, machine, qemu)
    assert where.mode == mode
    assert says in where.reason


def test_vcan_skip_reason_names_the_missing_pieces() -> None:
    reason = decide("auto", False, NO_CAN, "x86_64", None).reason
    assert "no SocketCAN on this host (the kernel has no AF_CAN: nope)" in reason
    assert "qemu-system-x86_64 not found" in reason


def test_vcan_guest_reports_fold_into_one_outcome_per_test() -> None:
    lines: list[dict[str, object]] = [
        {"nodeid": "a", "phase": "setup", "outcome": "passed", "seconds": 0.1},
        {"nodeid": "a", "phase": "call", "outcome": "failed", "text": "boom", "seconds": 1},
        {"nodeid": "a", "phase": "teardown", "outcome": "passed", "seconds": 0.1},
        {"nodeid": "b", "phase": "setup", "outcome": "skipped", "text": "no fd"},
        {"nodeid": "b", "phase": "teardown", "outcome": "passed"},
        {"nodeid": "c", "phase": "setup", "outcome": "passed"},
        {"nodeid": "c", "phase": "call", "outcome": "passed"},
        {"nodeid": "c", "phase": "teardown", "outcome": "failed", "text": "leak"},
        {"nodeid": "d", "phase": "call", "outcome": "passed"},
    ]
    merged = merge_reports(lines)
    assert (merged["a"].outcome, merged["a"].text) == ("failed", "call: boom")
    assert merged["a"].seconds == pytest.approx(1.2)
    assert (merged["b"].outcome, merged["b"].text) == ("skipped", "no fd")
    assert (merged["c"].outcome, merged["c"].text) == ("failed", "teardown: leak")
    assert merged["d"].outcome == "passed"


def test_vcan_module_order_loads_dependencies_first() -> None:
    modules_dep = (
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko"
        " kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n"
        "kernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/drivers/net/can/vcan.ko: kernel/drivers/net/can/dev/can-dev.ko\n"
        "kernel/drivers/net/can/dev/can-dev.ko:\n"
    )
    order = [Path(p).name for p in module_order(modules_dep, ("9p", "vcan"))]
    assert order == ["netfs.ko", "fscache.ko", "9pnet.ko", "9p.ko", "can-dev.ko", "vcan.ko"]


def test_vcan_initramfs_is_a_valid_newc_archive(tmp_path: Path) -> None:
    cpio = shutil.which("cpio")
    if cpio is None:
        pytest.skip("cpio is not installed (`make system-packages` installs it)")
    kernel = tmp_path / "kernel"
    (kernel / "modules").mkdir(parents=True)
    (kernel / "modules" / "vcan.ko").write_bytes(b"\x7fELF-not-really")
    (kernel / "modules.load").write_text("vcan\n")
    out = tmp_path / "initramfs.cpio"
    write_initramfs(kernel, b"#!/bin/sh\n", b"busybox-bytes", out)
    listing = subprocess.run(
        [cpio, "-itv", "--quiet"], input=out.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == [
        "bin",
        "dev",
        "dev/console",
        "lib",
        "lib/modules",
        "init",
        "bin/busybox",
        "modules.load",
        "lib/modules/vcan.ko",
    ]
    console = next(line for line in listing.splitlines() if line.endswith("dev/console"))
    assert console.startswith("crw") and "5,   1" in console
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(
        [cpio, "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/console"],
        input=out.read_bytes(),
        cwd=unpacked,
        check=True,
    )
    assert (unpacked / "lib" / "modules" / "vcan.ko").read_bytes() == b"\x7fELF-not-really"
    assert os.access(unpacked / "init", os.X_OK)


def _pytest_vcan(extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMON_")}
    env.update(extra_env)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args]
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_vcan_tests_skip_clearly_without_socketcan_and_qemu() -> None:
    if probe_host(create=False).classic is not None:
        pytest.skip("this host has vcan0: the no-SocketCAN path is covered by test_vcan_decide")
    no_qemu = {"EDGEMON_VCAN_QEMU": "/nonexistent/qemu-system-x86_64"}
    done = _pytest_vcan(no_qemu, "-m", "vcan", "tests/vcan/test_vcan_socketcan.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " skipped" in done.stdout and "passed" not in done.stdout
    assert "no SocketCAN on this host" in done.stdout
    assert "no QEMU to boot the throwaway VM" in done.stdout
    required = _pytest_vcan(
        {**no_qemu, "EDGEMON_VCAN_REQUIRE": "1"},
        "tests/vcan/test_vcan_socketcan.py::test_vcan_cansend_reaches_python_can",
    )
    assert required.returncode == 1
    assert "EDGEMON_VCAN_REQUIRE=1 but no SocketCAN on this host" in required.stdout


def test_vcan_unit_parser_reads_prefixes_and_quotes() -> None:
    text = (
        "[Unit]\nExecStart=/bin/no\n[Service]\n"
        "ExecStartPre=-/sbin/x a\nExecStart=/bin/sh -c 'a || b'\n"
    )
    assert unit_commands(text, "ExecStartPre") == [(True, ["/sbin/x", "a"])]
    assert unit_commands(text, "ExecStart") == [(False, ["/bin/sh", "-c", "a || b"])]


def _fake_qemu(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-qemu"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def _image(tmp_path: Path) -> VmImage:
    return VmImage(kernel=tmp_path / "vmlinuz", initramfs=tmp_path / "initramfs", release="x")


def test_vcan_vm_run_kills_a_hung_qemu_by_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "qemu.pid"
    fake = _fake_qemu(tmp_path, f"echo $$ > {pidfile}\necho booting\nexec sleep 600\n")
    monkeypatch.setenv("EDGEMON_VCAN_QEMU", str(fake))
    result = vm_run(_image(tmp_path), "true\n", tmp_path / "job", timeout=1.0)
    assert (result.timed_out, result.exit_code) == (True, None)
    assert "booting" in result.console
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_vcan_vm_run_reads_the_guest_exit_code_and_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake finds the job share in its -virtfs arguments, as the guest's init would mount it.
    body = (
        'for a in "$@"; do case "$a" in *mount_tag=job*) '
        "dir=${a#local,path=}; dir=${dir%%,*};; esac; done\n"
        'grep -q "echo hi" "$dir/job.sh" && echo 7 > "$dir/exit-code"\n'
        "printf 'vcan-vm: ready\\r\\n'\n"
    )
    monkeypatch.setenv("EDGEMON_VCAN_QEMU", str(_fake_qemu(tmp_path, body)))
    result = vm_run(_image(tmp_path), "echo hi\n", tmp_path / "job", timeout=30)
    assert (result.timed_out, result.exit_code) == (False, 7)
    assert result.console == "vcan-vm: ready\n"
