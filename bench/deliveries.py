"""The delivery side shared by ``bench_backend`` and ``bench_e2e``: an HTTPS receiver in its own
process (sharing a GIL with the benchmark would measure the GIL), ``edgemon-backend run`` with
its default configuration, and monitors written to the backend's store before it starts.

The receiver appends one line per request to ``arrivals.tsv``: ``arrival<TAB>target<TAB>body``
(arrival = ``time.time()`` once the whole request is read).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import ROOT, spawn, stop

from agent.wire import uuid7
from backend.store.records import MonitorRecord
from backend.store.sqlite import SqliteStore
from tests.backend.backend_receiver import CertAuthority, Received, Receiver, Reply
from tests.support.mosquitto import Mosquitto

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef012").decode()
# The webhook SSRF guard (issue 12) refuses loopback targets unless allowlisted; the receiver
# is on loopback. Today's config ignores unknown keys, so this is safe before and after it lands;
# set it to "" here, in one place, should a backend refuse the key.
ALLOW_LOOPBACK = 'allow_networks = ["127.0.0.0/8", "::1/128"]\n'


@dataclass(frozen=True)
class Arrival:
    at: float
    target: str
    body: str

    def event_dates(self) -> list[float]:
        """The ``eventDate`` of every event in the webhook, as POSIX seconds."""
        events = json.loads(self.body)["events"]
        return [datetime.fromisoformat(e["eventDate"].replace("Z", "+00:00")).timestamp()
                for e in events]  # fmt: skip


class ReceiverProcess:
    """Started by ``start()``; ``arrivals()`` returns the requests that arrived since the last
    call (the file is read incrementally)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log = work / "arrivals.tsv"
        self.ca_file = work / "test-ca.pem"
        self._offset = 0
        self._partial = b""
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> ReceiverProcess:
        self.proc = spawn(
            [sys.executable, __file__, "--serve", str(self.work)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the port; a dead receiver gives ""
        if not line.strip():
            raise RuntimeError("the HTTPS receiver did not start")
        self.url = f"https://127.0.0.1:{int(line)}"
        return self

    def arrivals(self) -> list[Arrival]:
        if not self.log.exists():
            return []
        with self.log.open("rb") as handle:
            handle.seek(self._offset)
            data = self._partial + handle.read()
        self._offset += len(data) - len(self._partial)
        *lines, self._partial = data.split(b"\n")
        out = []
        for raw in lines:
            at, target, body = raw.decode().split("\t", 2)
            out.append(Arrival(float(at), target, body))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


def serve(work: Path) -> int:
    """The receiver process: answer 200 to everything, log each request."""
    ca = CertAuthority.create(work)  # the parent gives the backend this CA file
    out = (work / "arrivals.tsv").open("a", buffering=1)

    def respond(request: Received) -> Reply:
        out.write(f"{request.at}\t{request.target}\t{request.body.decode()}\n")
        return Reply(200)

    receiver = Receiver(ca.server_context(), respond=respond).start()
    print(receiver.port, flush=True)
    signal.sigwait([signal.SIGTERM, signal.SIGINT])
    receiver.stop()
    return 0


def monitor_definition(target: str, batch: int | None = None) -> dict[str, Any]:
    subscribe: dict[str, Any] = {
        "retryPolicy": {"policy": "None"},
        "callback": {"webhook": {"target": target, "name": "bench"}},
    }
    if batch:
        subscribe["batchNotify"] = {"size": batch, "timeWindow": 5}
    return {
        "label": "bench",
        "subscribeParam": subscribe,
        "triggerParam": {
            "triggers": [
                {
                    "name": "hot",
                    "data": {
                        "data": "vehicle.engines.thermic.oil.temp",
                        "op": "greaterThan",
                        "value": ["120"],
                    },
                }
            ],
            "boolExp": "hot",
        },
    }


def create_monitors(
    store_path: Path, fleet: str, vins: list[str], targets: dict[str, int | None]
) -> dict[str, str]:
    """The vehicles provisioned in ``fleet`` (the backend routes an event by its record of the
    vehicle's fleet) and one fleet monitor per target URL (value: its batchNotify size);
    returns URL -> monitor id."""
    store = SqliteStore(store_path)
    ids = {}
    try:
        for vin in vins:
            store.put_vehicle(vin, fleet, 0)
        for target, batch in targets.items():
            monitor_id = uuid7()
            definition = monitor_definition(target, batch)
            store.create_monitor(
                MonitorRecord(monitor_id, "fleet", fleet, definition, "Running", 0, 0)
            )
            ids[target] = monitor_id
    finally:
        store.close()
    return ids


def backend_config(work: Path, broker: Mosquitto, ca_file: Path, extra: str = "") -> Path:
    """The default configuration, plus what a deployment must say: the store, the broker, the
    secret, the receiver's CA and the loopback allowlist (``extra``: more TOML, said by the
    caller)."""
    config = work / "backend.toml"
    config.write_text(
        f'[store]\npath = "{work / "backend.db"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[webhooks]\ndefault_secret = "{SECRET}"\nca_bundle = "{ca_file}"\n'
        + ALLOW_LOOPBACK
        + extra
    )
    return config


def start_backend(work: Path, config: Path, timeout: float = 20.0) -> subprocess.Popen[bytes]:
    """``edgemon-backend run`` (ingest + dispatcher); under cProfile when ``$BENCH_PROFILE``
    names a folder (the profile is written when the backend stops)."""
    argv = [sys.executable, "-m", "backend", "run", "-c", str(config)]
    profile_dir = os.environ.get("BENCH_PROFILE")
    if profile_dir:
        out = Path(profile_dir) / f"backend-{os.getpid()}.prof"
        argv[1:1] = ["-m", "cProfile", "-o", str(out)]
    log_path = work / "backend.log"
    with log_path.open("ab") as log:
        proc = spawn(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while "ingest subscribed" not in log_path.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f"the backend did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--serve":
    sys.exit(serve(Path(sys.argv[2])))
