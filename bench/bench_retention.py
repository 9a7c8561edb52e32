"""Retention on the SQLite store (issue 15): how fast the purge deletes delivered deliveries with
their attempts and events, and how long one batch holds the write lock.

Builds a store of ``N`` delivered single-event deliveries (the webhook JSON of the tests' event,
about 1.3 kB a row as in the soak), then purges it batch by batch as the backend does.

- ``purge_rows_per_s``: deliveries (each with its attempt and event) deleted per second;
- ``purge_batch_ms_max``: the longest single ``purge`` call (one transaction) at ``batch``;
- ``file_mb_before`` / ``file_mb_after``: SQLite keeps the freed pages for new rows (the file
  does not shrink without ``VACUUM``): the figure shows growth stops, not that the file shrinks.

Usage: .venv/bin/python bench/bench_retention.py [N] [batch]   (prints JSON; figures are noisy on
a shared machine: read them as orders of magnitude)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import guard, pick, stage, write_results  # noqa: E402

from backend.store.records import Attempt, AttemptResult  # noqa: E402
from backend.store.sqlite import SqliteStore  # noqa: E402
from tests.backend.conftest import (  # noqa: E402
    T0,
    add_monitor,
    ingest_events,
    make_event,
    monitor_definition,
)


def fill(store: SqliteStore, count: int) -> None:
    mid = add_monitor(store, monitor_definition("https://bench.example/in"))
    for start in range(0, count, 500):
        size = min(500, count - start)
        events = [make_event(mid, at=T0 + (start + i) / 1000) for i in range(size)]
        ingest_events(store, events, T0)
        claims = store.claim_due(T0, size, {}, size, T0 + 60)
        results = [
            AttemptResult(
                c.delivery_id,
                Attempt(c.delivery_id, 1, T0, 0.01, "delivered", 200),
                mid,
                "delivered",
            )
            for c in claims
        ]
        store.record_results(results, T0)


def main(count: int = 50_000, batch: int = 1000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "b.db"
        store = SqliteStore(path)
        fill(store, count)
        before = path.stat().st_size + Path(f"{path}-wal").stat().st_size
        longest, deleted, started = 0.0, 0, time.perf_counter()
        while True:
            t = time.perf_counter()
            counts = store.purge(T0 + 86400, T0, batch)
            longest = max(longest, time.perf_counter() - t)
            deleted += counts["deliveries"]
            if counts["deliveries"] < batch and counts["events"] < batch:
                break
        elapsed = time.perf_counter() - started
        after = path.stat().st_size + Path(f"{path}-wal").stat().st_size
        store.close()
    return {
        "deliveries": float(deleted),
        "batch": float(batch),
        "purge_rows_per_s": round(deleted / elapsed),
        "purge_batch_ms_max": round(longest * 1000, 1),
        "file_mb_before": round(before / 1e6, 1),
        "file_mb_after": round(after / 1e6, 1),
    }


if __name__ == "__main__":
    guard("retention")
    args = [int(a) for a in sys.argv[1:3]] or [pick(50_000, 2_000)]
    with stage("fill and purge", pick(120, 30)):
        figures = main(*args)
    print(json.dumps(figures, indent=2))
    write_results(
        "retention",
        {
            f"retention_{k}": v
            for k, v in figures.items()
            if k in ("purge_rows_per_s", "purge_batch_ms_max")
        },
    )
