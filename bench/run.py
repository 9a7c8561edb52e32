"""Run every benchmark, each under a deadline, then merge their figures into one results file and
print them against the targets of issue 14.

    .venv/bin/python bench/run.py            # make bench: writes bench/results.json
    BENCH_SMOKE=1 .venv/bin/python bench/run.py   # make bench-smoke: seconds per benchmark

Each benchmark runs as a child process in its own session. Stopped by SIGTERM/SIGINT/SIGHUP
(or by its parent dying), this runner stops the running benchmark by PID, which stops its own
children; PIDs a benchmark registered (``$BENCH_PIDFILE``) and left behind are then stopped by
PID as well. Exit status 1 if a benchmark failed, hung or a required figure is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import RESULTS_DIR, ROOT, SMOKE, die_with_parent, start_time
from machine import machine

# (benchmark, deadline in seconds): the full run stays under 5 minutes with room to spare
# on a loaded machine; a smoke run takes a few seconds each.
BENCHES = [
    ("ingest", 45),
    ("engine", 30),
    ("nmea", 20),
    ("simulate", 20),
    ("outbox", 45),
    ("agent", 30),
    ("backend", 50),
    ("e2e", 60),
    ("retention", 150),
]
# key, comparison, target (None: recorded, no target in issue 14)
TARGETS: list[tuple[str, str, float | None]] = [
    ("ingest_frames_per_s", ">=", 300_000),
    ("ingest_ratio_vs_plain", ">=", 4),
    ("monitors_100_throughput_ratio", ">=", 0.7),
    ("e2e_latency_ms_p50", "<=", 5),
    ("e2e_latency_ms_p99", "<=", 25),
    ("outbox_writes_per_s", "", None),
    ("backend_deliveries_per_s", ">=", 1_500),
    ("backend_batched_events_per_s", ">=", 5_000),
    ("agent_rss_mb", "<=", 100),
    ("agent_startup_s", "<=", 2),
    ("backend_rss_mb", "<=", 200),
    ("retention_purge_rows_per_s", "", None),
    ("retention_purge_batch_ms_max", "", None),
]
RESULTS = RESULTS_DIR / "results.json" if SMOKE else ROOT / "bench" / "results.json"

_running: list[subprocess.Popen[bytes]] = []  # the benchmark running now, if any
_pidfile = Path(tempfile.mkstemp(prefix="bench-pids-")[1])


def reap_leftovers() -> None:
    """Stop, by PID, every process a benchmark registered that still runs."""
    lines = _pidfile.read_text().splitlines() if _pidfile.exists() else []
    for line in lines:
        pid_text, _, started = line.partition(" ")
        pid = int(pid_text)
        if start_time(pid) is None or start_time(pid) != started:
            continue
        print(f"run: stopping leftover process {pid}", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if start_time(pid) is None:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _pidfile.write_text("")


def _stop_current() -> None:
    proc = _running[0] if _running else None
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _on_signal(signum: int, _frame: object) -> None:
    print(f"run: stopped by signal {signum}; stopping the running benchmark", file=sys.stderr)
    _stop_current()
    reap_leftovers()
    _pidfile.unlink(missing_ok=True)
    os._exit(128 + signum)


def run_one(name: str, deadline: float) -> bool:
    script = ROOT / "bench" / f"bench_{name}.py"
    (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)
    print(f"\n== {script.relative_to(ROOT)} (deadline {deadline:.0f} s)", flush=True)
    env = {**os.environ, "BENCH_PIDFILE": str(_pidfile), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - the runner starts no threads
    )
    _running[:] = [proc]
    try:
        code = proc.wait(deadline)
    except subprocess.TimeoutExpired:
        print(f"run: FAILED: bench_{name} did not finish within {deadline:.0f} s", flush=True)
        _stop_current()
        code = -1
    finally:
        reap_leftovers()
    took = time.monotonic() - started
    if code != 0:
        print(f"run: FAILED: bench_{name} exited with {code} after {took:.0f} s", flush=True)
    return code == 0 and (RESULTS_DIR / f"{name}.json").exists()


def verdict(value: float, op: str, target: float | None) -> str:
    if SMOKE:
        return "(smoke: not judged)"
    if target is None:
        return "(no target)"
    ok = value >= target if op == ">=" else value <= target
    return "met" if ok else "NOT MET"


def table(results: dict[str, object]) -> list[str]:
    lines = [f"{'figure':32} {'value':>14}  {'target':>12}  verdict", "-" * 72]
    for key, op, target in TARGETS:
        value = results.get(key)
        if not isinstance(value, int | float):
            lines.append(f"{key:32} {'MISSING':>14}")
            continue
        goal = f"{op} {target:,g}" if target is not None else "-"
        lines.append(f"{key:32} {value:>14,.2f}  {goal:>12}  {verdict(value, op, target)}")
    return lines


def main() -> int:
    die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    failed = [name for name, deadline in BENCHES if not run_one(name, deadline)]
    merged: dict[str, object] = {}
    for name, _ in BENCHES:
        path = RESULTS_DIR / f"{name}.json"
        if path.exists():
            merged.update(json.loads(path.read_text()))
    merged.update(
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        machine=machine(),
        load_average_before=round(load_before, 2),
        load_average_after=round(os.getloadavg()[0], 2),
        bench_seconds=round(time.monotonic() - started, 1),
        smoke=SMOKE,
    )
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    _pidfile.unlink(missing_ok=True)
    print(f"\n# {'smoke run (no figure is meaningful)' if SMOKE else 'results'}: "
          f"{RESULTS.relative_to(ROOT)}; {merged['machine']}; load average "
          f"{load_before:.1f} -> {merged['load_average_after']}; "
          f"{merged['bench_seconds']} s")  # fmt: skip
    print("\n".join(table(merged)))
    missing = [key for key, _, _ in TARGETS if key not in merged]
    if failed or missing:
        print(f"FAILED: benchmarks {failed or 'none'}; missing figures {missing or 'none'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
