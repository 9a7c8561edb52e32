"""The whole edgemon chain on one machine, for ``make demo`` and the full-chain tests:
throwaway CA -> TLS mosquitto with per-vehicle ACL -> ``edgemon-backend run`` -> HTTPS webhook
receiver (signature checked) -> monitors created through the API -> a simulated drive written
by ``edgemon-agent simulate`` -> ``edgemon-agent run`` replaying it in real time.

Every process is started here and stopped here by its PID (``stop()``; also on Ctrl-C).
Processes run in their own session, so a terminal's Ctrl-C reaches only this one, which then
stops the others in order.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scripts.broker import TlsBroker, free_port, wait_for_port
from scripts.broker_config import BrokerAccess
from scripts.observer import Observer
from scripts.pki import Pki, make_pki
from scripts.receiver import Notification, WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "edgemon/v1"
SCENARIO = ROOT / "docs" / "scenarios" / "night-depot-exit.toml"


@dataclass(frozen=True)
class Identity:
    vin: str = "VF3ABCDEF12345678"
    fleet_id: str = "fleet-demo"


def issue_vehicle_cert(pki: Pki, vin: str, directory: Path) -> tuple[Path, Path]:
    """The vehicle's client certificate and key, issued by ``scripts.vehicle_cert``."""
    argv = [sys.executable, "-m", "scripts.vehicle_cert", "--ca", str(pki.ca_file)]
    argv += ["--ca-key", str(pki.ca_key_file), "--vin", vin, "--test-id", "-o", str(directory)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cannot issue the vehicle certificate: {done.stderr}")
    return directory / f"{vin}.pem", directory / f"{vin}.key"


class Process:
    """One child process with its log file; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        proc = self.popen
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.popen = None
        return proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Chain:
    def __init__(
        self,
        workdir: Path,
        *,
        identity: Identity | None = None,
        scenario: Path = SCENARIO,
        on_notification: Callable[[Notification], None] | None = None,
        log_level: str = "info",
    ) -> None:
        self.workdir = workdir
        self.identity = identity or Identity()
        self.scenario = scenario
        self.log_level = log_level
        self.token = secrets.token_hex(16)
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.passwords = {name: secrets.token_hex(12) for name in ("backend", "observer")}
        # The agent connects with its certificate; the password lets tests act as that vehicle
        # on the service listener (the ACL is the same whichever way a vehicle logs in).
        self.passwords[self.identity.vin] = secrets.token_hex(12)
        self.api_port, self.receiver_port = free_port(), free_port()
        self.pki: Pki = make_pki(workdir / "pki")
        self.vehicle_cert, self.vehicle_key = issue_vehicle_cert(
            self.pki, self.identity.vin, workdir / "pki"
        )
        access = BrokerAccess(
            prefix=PREFIX,
            backend=("backend",),
            observers=("observer",),
            vehicles=((self.identity.vin, self.identity.fleet_id),),
        )
        self.broker = TlsBroker(workdir / "broker", self.pki, access, self.passwords)
        self.receiver = WebhookReceiver(self.pki, self.secret, self.receiver_port, on_notification)
        self.backend = Process("backend", self._backend_argv(), workdir)
        self.agent = Process("agent", self._agent_argv(), workdir)
        self.observer: Observer | None = None
        self.monitor_ids: list[str] = []

    # -- configuration files ---------------------------------------------------------------------

    def _backend_argv(self) -> list[str]:
        config = self.workdir / "backend.toml"
        config.write_text(
            f'topic_prefix = "{PREFIX}"\n'
            '[store]\npath = "backend.db"\n'
            f'[api]\nhost = "127.0.0.1"\nport = {self.api_port}\n'
            f'[[api.tokens]]\nname = "demo"\ntoken = "{self.token}"\n'
            'scopes = ["monitors:read", "monitors:write", "deliveries:read", "deliveries:write",'
            ' "admin"]\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.port}\ntls = true\n'
            f'ca_file = "{self.pki.ca_file}"\nusername = "backend"\n'
            f'password = "{self.passwords["backend"]}"\nclient_id = "edgemon-backend-demo"\n'
            # One ingest process: a plain subscription, which mosquitto keeps across its own
            # restart (a shared one it drops; see docs/mqtt.md).
            'share_group = ""\n'
            f'[webhooks]\ndefault_secret = "{self.secret}"\nca_bundle = "{self.pki.ca_file}"\n'
            'allow_networks = ["127.0.0.0/8", "::1/128"]\n'  # the receiver is on loopback
            "timeout = 10.0\nconnect_timeout = 2.0\n"
            # the receiver's outage lasts seconds: probe it every 2-4 s, not every 30 s-10 min
            "breaker_cooldown = 2.0\nbreaker_max_cooldown = 4.0\n"
            "[dispatcher]\npoll_interval = 0.1\n"
        )
        return [sys.executable, "-m", "backend", "run", "-c", str(config)]

    def _agent_argv(self) -> list[str]:
        config = self.workdir / "agent.toml"
        ident = self.identity
        config.write_text(
            f'vin = "{ident.vin}"\nfleet_id = "{ident.fleet_id}"\n'
            f'state_dir = "agent-state"\nclock = "gps"\nlog_level = "{self.log_level}"\n'
            "[[can]]\n"
            'name = "can0"\ninterface = "virtual"\nchannel = "edgemon-chain"\n'
            f'dbc = ["{ROOT / "dbc" / "demo_vehicle.dbc"}"]\n'
            f'signal_map = "{ROOT / "dbc" / "demo_vehicle.map.toml"}"\n'
            'replay = "drive.log"\n'
            '[gps]\nport = "drive.nmea"\nreplay_pace = "realtime"\n'
            # the vehicle listener: a client certificate whose CN is the VIN, no password
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.broker.cert_port}\ntls = true\n'
            f'ca_file = "{self.pki.ca_file}"\ncert_file = "{self.vehicle_cert}"\n'
            f'key_file = "{self.vehicle_key}"\nreconnect_max = 2.0\n'
        )
        (self.workdir / "agent-state").mkdir(exist_ok=True)
        return [sys.executable, "-m", "agent", "run", "-c", str(config)]

    # -- lifecycle -------------------------------------------------------------------------------

    def start_services(self) -> None:
        """Broker, backend, receiver and observer; returns once the API answers."""
        self.broker.start()
        self.observer = Observer(
            self.pki, self.broker.port, "observer", self.passwords["observer"], PREFIX
        )
        self.receiver.start()
        self.start_backend()

    def start_backend(self) -> None:
        self.backend.start()
        self.wait_for(self._api_healthy, 20, "the backend API to answer /healthz", self.backend)
        self.provision()

    def provision(self) -> None:
        """Put the vehicle in its fleet: the backend routes events by its own record of that."""
        ident = self.identity
        answer = self.api("PUT", f"/fleets/{ident.fleet_id}/vehicles/{ident.vin}")
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"vehicle not provisioned ({answer.status_code}): {answer.text}")

    def _api_healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(method, self.api_url + path, json=body, headers=headers, timeout=10)

    def create_monitor(self, definition: dict[str, Any]) -> str:
        answer = self.api("POST", f"/vehicles/{self.identity.vin}/monitors", definition)
        if answer.status_code != 202:
            raise RuntimeError(f"monitor refused ({answer.status_code}): {answer.text}")
        monitor_id = str(answer.json()["monitorId"])
        self.monitor_ids.append(monitor_id)
        return monitor_id

    def write_drive(self, seed: int | None = None, start: str | None = None) -> None:
        """The drive the agent replays: a candump log and an NMEA file, by the simulator."""
        argv = [sys.executable, "-m", "agent", "simulate", "--scenario", str(self.scenario)]
        argv += ["--fast", "--can-log", "drive.log", "--nmea", "drive.nmea"]
        if seed is not None:
            argv += ["--seed", str(seed)]
        if start is not None:
            argv += ["--start", start]
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the simulator failed: {done.stderr or done.stdout}")

    def start_agent(self) -> None:
        self.agent.start()

    def wait_for(
        self,
        condition: Callable[[], bool],
        timeout: float,
        what: str,
        process: Process | None = None,
        explain: Callable[[], str] | None = None,
    ) -> None:
        """Poll ``condition``; on time-out the error carries ``explain()`` (what is missing)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if process is not None and process.popen is not None and not process.running():
                raise RuntimeError(f"{process.name} exited while waiting for {what}:\n"
                                   f"{process.tail()}")  # fmt: skip
            if time.monotonic() > deadline:
                detail = f"\n{explain()}" if explain is not None else ""
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
            time.sleep(0.05)

    def delivery_report(self, monitor_id: str) -> list[str]:
        """One line per delivery of a monitor not delivered yet, with its last error (API)."""
        try:
            answer = self.api("GET", f"/monitors/{monitor_id}/deliveries?pageSize=60")
            items = answer.json()["_embedded"]["deliveries"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return [f"  deliveries of {monitor_id}: the API did not answer ({exc})"]
        lines = []
        for item in items:
            if item.get("state") == "delivered":
                continue
            last = item["attempts"][-1] if item.get("attempts") else {}
            lines.append(
                f"  delivery {item.get('deliveryId')} of {monitor_id}: {item.get('state')}, "
                f"{item.get('attemptCount')} attempt(s), last error {last.get('error')!r}, "
                f"reason {item.get('reason')!r}, next {item.get('nextAttemptAt')}"
            )
        return lines

    def monitors_applied(self) -> bool:
        if self.observer is None:
            return False
        applied = {
            s.topic.split("/")[-2]
            for s in self.observer.seen("/state")
            if s.payload and s.json().get("state") == "applied"
        }
        return set(self.monitor_ids) <= applied

    def stop(self) -> None:
        """Stop everything this chain started, by PID, in reverse order."""
        with contextlib.suppress(Exception):
            self.agent.stop()
        with contextlib.suppress(Exception):
            self.backend.stop()
        with contextlib.suppress(Exception):
            self.receiver.stop()
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.close()
        with contextlib.suppress(Exception):
            self.broker.stop()

    def pids(self) -> list[int]:
        found = [p.pid for p in (self.agent, self.backend) if p.running() and p.pid]
        broker = self.broker.process
        if broker is not None and broker.poll() is None:
            found.append(broker.pid)
        return [pid for pid in found if pid is not None]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes; Popen.wait() reaps it
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


__all__ = ["Chain", "Identity", "Process", "pid_alive", "wait_for_port"]
