"""What every benchmark shares: smoke mode, stage deadlines, child processes stopped by PID on
every way out, and the file each benchmark writes its figures to.

- ``SMOKE`` (``BENCH_SMOKE=1``): every benchmark runs a few seconds of each stage, asserts no
  figure, and writes to ``bench/.results-smoke/`` so the recorded run is left alone.
- ``guard(name)``: installs SIGTERM/SIGINT/SIGHUP handlers that stop every registered child
  (by PID) before exiting, asks the kernel to send this process SIGTERM when its parent dies
  (``make`` killed: nothing is orphaned), and stops the children at a normal exit too.
- ``stage(title, seconds)``: a deadline per stage; past it the process prints which stage hung
  and every thread's stack, stops its children and exits 2.
- ``spawn``/``adopt``: register a child; its PID is also appended to ``$BENCH_PIDFILE`` so the
  runner (``bench/run.py``) can stop what a killed benchmark left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0")
RESULTS_DIR = ROOT / "bench" / (".results-smoke" if SMOKE else ".results")
PR_SET_PDEATHSIG = 1

_children: list[subprocess.Popen[Any]] = []
_lock = threading.Lock()
_who = ["bench"]  # the benchmark's name, for messages (set once by ``guard``)


try:  # looked up once: a Popen preexec_fn must not load libraries after fork
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def die_with_parent() -> None:
    """Linux: deliver SIGTERM to this process when its parent exits (also used as a Popen
    ``preexec_fn``). A no-op where prctl is unavailable."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def adopt(proc: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    """Register a child someone else started (e.g. ``BrokerProcess.process``)."""
    with _lock:
        _children.append(proc)
    pidfile = os.environ.get("BENCH_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as out:  # with its start time: a reused PID is not ours
            out.write(f"{proc.pid} {start_time(proc.pid)}\n")
    return proc


def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a child in its own session (a terminal's Ctrl-C reaches only the benchmark, which
    then stops it), dying with this process, registered for ``stop_children``."""
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("preexec_fn", die_with_parent)
    return adopt(subprocess.Popen(argv, **kwargs))


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit in ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def stop_children() -> None:
    """Stop every registered child still running, newest first."""
    with _lock:
        procs = list(reversed(_children))
        _children.clear()
    for proc in procs:
        with contextlib.suppress(Exception):
            stop(proc, 5.0)


def _on_signal(signum: int, _frame: object) -> None:
    print(f"{_who[0]}: stopped by signal {signum}; stopping child processes", file=sys.stderr)
    stop_children()
    os._exit(128 + signum)


def guard(name: str) -> None:
    """Call first in a benchmark's ``main``."""
    _who[0] = name
    die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    import atexit

    atexit.register(stop_children)


@contextlib.contextmanager
def stage(title: str, seconds: float) -> Iterator[None]:
    """Run the body under a deadline; on expiry: say so, dump stacks, stop children, exit 2."""

    def expire() -> None:
        print(
            f"\n{_who[0]}: FAILED: stage '{title}' did not finish within {seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        stop_children()
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    try:
        yield
    finally:
        timer.cancel()
    print(f"[{_who[0]}] stage '{title}': {time.monotonic() - started:.1f} s", flush=True)


def pick(full: Any, smoke: Any) -> Any:
    """The full-run value, or the smoke one under ``BENCH_SMOKE``."""
    return smoke if SMOKE else full


def write_results(name: str, figures: dict[str, float]) -> Path:
    """This benchmark's figures, merged by ``bench/run.py`` into one results file."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    clean = {k: round(float(v), 4) for k, v in figures.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
