"""The throwaway Linux VM that gives SocketCAN (vcan) where the host kernel has none.

Build (cached under ``.cache/vcan-vm/``): the Debian ``linux-image-6.1.0-*-amd64`` kernel is
fetched with ``apt-get download`` and unpacked with ``dpkg -x``; ``depmod`` orders the virtio,
9p and CAN modules; an initramfs (written here in cpio "newc" format) holds a static busybox,
those modules and ``scripts/vcan-vm/init.sh`` as ``/init``.

Run: QEMU (TCG, no KVM) boots it with the host root shared read-only over 9p and a host
directory shared read-write as the "job" share; the guest creates ``vcan0`` (classic) and
``vcan1`` (CAN FD, mtu 72), runs ``job.sh`` from the share in a chroot of the host root (so the
host's Python and virtual environment run unchanged) and powers off. QEMU is killed by its PID
when the global timeout passes.

CLI: ``python -m scripts.vcan_vm build`` | ``run -- CMD...`` (e.g. ``run -- ip -d link``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EDGEMON_VCAN_CACHE", ROOT / ".cache" / "vcan-vm"))
INIT_SCRIPT = ROOT / "scripts" / "vcan-vm" / "init.sh"
BUSYBOX = Path("/bin/busybox")
# Loaded with their dependencies (from modules.dep), dependencies first.
# can-isotp: the kernel ISO-TP sockets of OBD-II (tests/vcan/test_vcan_obd.py)
WANTED_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "can-raw", "can-bcm", "vcan", "can-isotp")
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-6\.1\.0-(\d+)-amd64(-unsigned)?$")
BUILD_FORMAT = "1"  # bump when the layout of the cache changes
DEFAULT_TIMEOUT = float(os.environ.get("EDGEMON_VCAN_VM_TIMEOUT", "600"))

Progress = Callable[[str], None]


class VmUnavailable(Exception):
    """The VM cannot be built or started here (missing tool, package or architecture)."""


@dataclass(frozen=True)
class VmImage:
    kernel: Path
    initramfs: Path
    release: str


@dataclass(frozen=True)
class VmRun:
    exit_code: int | None  # the job's exit code; None when the job never finished
    timed_out: bool
    seconds: float
    console: str


def qemu_binary() -> str | None:
    """The QEMU binary (``EDGEMON_VCAN_QEMU`` overrides the one on PATH), None when absent."""
    wanted = os.environ.get("EDGEMON_VCAN_QEMU", "qemu-system-x86_64")
    return shutil.which(wanted)


# ---------------------------------------------------------------- build


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds between concurrent pytest sessions sharing one checkout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise VmUnavailable(f"`{argv[0]}` is not installed") from None
    if done.returncode != 0:
        raise VmUnavailable(f"`{shlex.join(argv)}` failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def kernel_package() -> str:
    """The newest ``linux-image-6.1.0-N-amd64`` apt knows (``EDGEMON_VCAN_KERNEL_PACKAGE`` wins)."""
    forced = os.environ.get("EDGEMON_VCAN_KERNEL_PACKAGE")
    if forced:
        return forced
    best = _newest_kernel_package()
    if best is None and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"])  # a fresh container often ships without apt lists
        best = _newest_kernel_package()
    if best is None:
        raise VmUnavailable(
            "apt knows no linux-image-6.1.0-*-amd64 package (the VM needs Debian 12 apt sources;"
            " run `apt-get update` as root)"
        )
    return best


def _newest_kernel_package() -> str | None:
    listing = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64"])
    best: tuple[int, int, str] | None = None
    for line in listing.splitlines():
        name = line.split(" ", 1)[0]
        match = KERNEL_PACKAGE_RE.match(name)
        if match:
            key = (int(match.group(1)), 0 if match.group(2) else 1, name)  # prefer signed
            best = key if best is None or key > best else best
    return None if best is None else best[2]


def _download(package: str, into: Path, progress: Progress) -> Path:
    progress(f"vcan-vm: apt-get download {package}")
    try:
        _run(["apt-get", "download", package], cwd=into)
    except VmUnavailable:
        if os.geteuid() != 0:
            raise
        progress("vcan-vm: apt-get update, then retry")
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", package], cwd=into)
    debs = sorted(into.glob("*.deb"))
    if not debs:
        raise VmUnavailable(f"apt-get download {package} left no .deb")
    return debs[0]


def module_order(modules_dep: str, wanted: tuple[str, ...]) -> list[str]:
    """Module paths (relative, as in modules.dep) to insmod in order: dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in modules_dep.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):  # modules.dep lists the deepest last
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise VmUnavailable(f"kernel module {name} is not in modules.dep")
        visit(by_name[name])
    return order


def _fetch_kernel(dest: Path, progress: Progress) -> None:
    """Fill ``dest`` with vmlinuz, the needed .ko files and modules.load (insmod order)."""
    for tool in ("apt-get", "dpkg", "depmod"):
        if shutil.which(tool) is None:
            raise VmUnavailable(f"`{tool}` is not installed (the VM build needs Debian tools)")
    package = kernel_package()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix="build-") as tmp:
        work = Path(tmp)
        deb = _download(package, work, progress)
        unpacked = work / "root"
        _run(["dpkg", "-x", str(deb), str(unpacked)])
        releases = sorted(p.name for p in (unpacked / "lib" / "modules").iterdir())
        if len(releases) != 1:
            raise VmUnavailable(f"{package}: expected one kernel release, found {releases}")
        release = releases[0]
        _run(["depmod", "-b", str(unpacked), release])
        moddir = unpacked / "lib" / "modules" / release
        order = module_order((moddir / "modules.dep").read_text(), WANTED_MODULES)
        staged = work / "kernel"
        (staged / "modules").mkdir(parents=True)
        shutil.copy2(unpacked / "boot" / f"vmlinuz-{release}", staged / "vmlinuz")
        names = []
        for rel in order:
            name = Path(rel).name.removesuffix(".ko")
            shutil.copy2(moddir / rel, staged / "modules" / f"{name}.ko")
            names.append(name)
        (staged / "modules.load").write_text("\n".join(names) + "\n")
        (staged / "kernel.json").write_text(
            json.dumps({"package": package, "release": release, "deb": deb.name}, indent=2)
        )
        shutil.rmtree(dest, ignore_errors=True)
        staged.rename(dest)
    progress(f"vcan-vm: kernel {release} from {package} cached in {dest}")


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    head = header + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def write_initramfs(kernel_dir: Path, init: bytes, busybox: bytes, out: Path) -> None:
    """An uncompressed newc archive: /init, /bin/busybox, /dev/console, /lib/modules/*.ko."""
    chunks = [
        _cpio_entry("bin", 0o40755),
        _cpio_entry("dev", 0o40755),
        _cpio_entry("dev/console", 0o20600, rdev=(5, 1)),
        _cpio_entry("lib", 0o40755),
        _cpio_entry("lib/modules", 0o40755),
        _cpio_entry("init", 0o100755, init),
        _cpio_entry("bin/busybox", 0o100755, busybox),
        _cpio_entry("modules.load", 0o100644, (kernel_dir / "modules.load").read_bytes()),
    ]
    for ko in sorted((kernel_dir / "modules").glob("*.ko")):
        chunks.append(_cpio_entry(f"lib/modules/{ko.name}", 0o100644, ko.read_bytes()))
    chunks.append(_cpio_entry("TRAILER!!!", 0))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(b"".join(chunks))
    tmp.rename(out)


def build(cache: Path = CACHE, progress: Progress = print) -> VmImage:
    """Build the kernel + initramfs, or reuse them from ``cache``; raises VmUnavailable."""
    if not BUSYBOX.is_file():
        raise VmUnavailable(f"{BUSYBOX} is missing (install busybox-static)")
    with _locked(cache / ".lock"):
        # the module list is part of the key: a module added is fetched, not missed
        modules = hashlib.sha256(" ".join(WANTED_MODULES).encode()).hexdigest()[:8]
        kernel_dir = cache / f"kernel-{BUILD_FORMAT}-{modules}"
        if not (kernel_dir / "kernel.json").is_file():
            _fetch_kernel(kernel_dir, progress)
        release = json.loads((kernel_dir / "kernel.json").read_text())["release"]
        init = INIT_SCRIPT.read_bytes()
        busybox = BUSYBOX.read_bytes()
        digest = hashlib.sha256()
        for part in (init, busybox, (kernel_dir / "modules.load").read_bytes(), release.encode()):
            digest.update(hashlib.sha256(part).digest())
        initramfs = cache / f"initramfs-{digest.hexdigest()[:16]}.cpio"
        if not initramfs.is_file():
            for old in cache.glob("initramfs-*.cpio"):
                old.unlink()
            write_initramfs(kernel_dir, init, busybox, initramfs)
            progress(f"vcan-vm: initramfs written: {initramfs}")
        return VmImage(kernel=kernel_dir / "vmlinuz", initramfs=initramfs, release=release)


# ---------------------------------------------------------------- run


def qemu_argv(image: VmImage, job_dir: Path, memory_mb: int, smp: int) -> list[str]:
    qemu = qemu_binary()
    if qemu is None:
        raise VmUnavailable("qemu-system-x86_64 is not installed")
    append = "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off nokaslr 8250.nr_uarts=1"
    # The project (and its .venv) is shared again on its own: a clone under /tmp would
    # otherwise vanish under the guest's tmpfs /tmp. init.sh mounts it back at the same path.
    project = str(ROOT)
    if " " not in project:
        append += f" edgemon.project={project}"
    return [
        qemu,
        *(
            "-machine",
            "q35",
            "-accel",
            os.environ.get("EDGEMON_VCAN_ACCEL", "tcg"),
            "-cpu",
            os.environ.get("EDGEMON_VCAN_CPU", "max"),
        ),
        *("-m", str(memory_mb), "-smp", str(smp)),
        *("-nodefaults", "-no-reboot", "-display", "none", "-monitor", "none"),
        *("-serial", "stdio", "-nic", "none"),
        *("-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", append),
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs",
        f"local,path={job_dir},mount_tag=job,security_model=none",
        "-virtfs",
        f"local,path={ROOT},mount_tag=project,security_model=none,readonly=on,multidevs=remap",
    ]


def run(
    image: VmImage,
    job_script: str,
    job_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_mb: int = 1024,
    smp: int = 2,
) -> VmRun:
    """Boot the VM, run ``job_script`` (sh, in the chroot of the host root, cwd /) and wait.

    ``job_dir`` is seen as ``/tmp/job`` in the guest (read-write). QEMU is killed by its PID
    when ``timeout`` seconds pass.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.sh").write_text(job_script)
    (job_dir / "exit-code").unlink(missing_ok=True)
    console_path = job_dir.parent / f"{job_dir.name}-console.log"
    started = time.monotonic()
    with console_path.open("wb") as console:
        proc = subprocess.Popen(
            qemu_argv(image, job_dir, memory_mb, smp),
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    seconds = time.monotonic() - started
    code_file = job_dir / "exit-code"
    exit_code = int(code_file.read_text().strip()) if code_file.is_file() else None
    text = console_path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
    return VmRun(exit_code=exit_code, timed_out=timed_out, seconds=seconds, console=text)


def job_prelude(cwd: Path = ROOT) -> str:
    """The start of every job script: a writable HOME, no bytecode writes, the venv on PATH."""
    venv_bin = Path(sys.executable).parent
    return "\n".join(
        [
            "set -u",
            "export HOME=/tmp/home TMPDIR=/tmp PYTHONDONTWRITEBYTECODE=1 EDGEMON_IN_VM=1",
            f"export PATH={shlex.quote(str(venv_bin))}:/usr/local/sbin:/usr/local/bin"
            ":/usr/sbin:/usr/bin:/sbin:/bin",
            "mkdir -p /tmp/home",
            f"cd {shlex.quote(str(cwd))}",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.vcan_vm", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build", help="build (or reuse) the kernel + initramfs in .cache/vcan-vm")
    runner = sub.add_parser("run", help="run a command in the VM (vcan0, vcan1 exist there)")
    runner.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    runner.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    try:
        image = build()
        if args.action == "build":
            print(f"kernel {image.kernel}\ninitramfs {image.initramfs}")
            return 0
        with tempfile.TemporaryDirectory(prefix="vcan-vm-") as tmp:
            script = job_prelude() + shlex.join(args.command) + "\n"
            result = run(image, script, Path(tmp) / "job", timeout=args.timeout)
    except VmUnavailable as exc:
        print(f"vcan-vm: unavailable: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.console)
    print(f"vcan-vm: {result.seconds:.1f} s, exit code {result.exit_code}", file=sys.stderr)
    return 1 if result.exit_code is None else result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
