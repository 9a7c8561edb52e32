"""mosquitto processes on free loopback ports, stopped by their PID, restartable on the same
ports (broker-outage faults).

``TlsBroker`` runs the shipped configuration (``deploy/mosquitto/``): the template rendered by
``scripts.broker_config`` with this run's paths and ports, the ACL generated from the vehicles
and their fleets, a hashed password file for the service accounts. Vehicles connect with a client
certificate (CN = VIN) on ``cert_port``, or with a password on ``port`` (the service listener).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from scripts.broker_config import BrokerAccess, acl_text, render_conf
from scripts.pki import Pki
from scripts.vehicle_cert import load_ca
from scripts.vehicle_crl import build_crl, serial_of


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed (the Makefile installs it with apt-get)")
    return found


class BrokerProcess:
    """One mosquitto process for a config file written by a subclass (``conf_path``)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        """Write ``conf_path``; called by ``start``."""

    def ports(self) -> list[int]:
        return [self.port]

    def start(self) -> Self:
        self.write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_binary("mosquitto"), "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            for port in self.ports():
                wait_for_port(self.host, port)
        except TimeoutError:
            self.stop()
            tail = self.log_path.read_text()[-2000:]
            raise RuntimeError(f"mosquitto did not start: {tail}") from None
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


class TlsBroker(BrokerProcess):
    """The shipped configuration; persistent, so a restart keeps sessions and retained monitors.

    ``passwords`` holds every account that logs in with a password (services, and vehicles
    provisioned that way); ``access`` says what each account may do.
    """

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        access: BrokerAccess,
        passwords: dict[str, str],
        *,
        port: int | None = None,
        cert_port: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.pki = pki
        self.access = access
        self.cert_port = cert_port or free_port()
        self.password_file = self.workdir / "passwd"
        self.acl_file = self.workdir / "acl"
        self.crl_file = self.workdir / "crl.pem"
        self.revoke()
        self.write_passwords(passwords)
        self.write_acl(access)

    def ports(self) -> list[int]:
        return [self.cert_port, self.port]

    def write_passwords(self, passwords: dict[str, str]) -> None:
        """Rewrite the password file (hashed by mosquitto_passwd); ``reload`` applies it."""
        self.password_file.touch(mode=0o600)
        self.password_file.chmod(0o600)  # before the clear passwords go in
        self.password_file.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()))
        subprocess.run([_binary("mosquitto_passwd"), "-U", str(self.password_file)], check=True)

    def write_acl(self, access: BrokerAccess) -> None:
        """Regenerate the ACL file; ``reload`` makes a running broker use it."""
        self.access = access
        self.acl_file.write_text(acl_text(access))

    def revoke(self, *certificates: Path) -> None:
        """Rewrite the revocation list with these certificates (none: an empty list), as
        ``scripts.vehicle_crl`` does; ``reload`` makes a running broker use it."""
        ca = load_ca(self.pki.ca_file.read_bytes(), self.pki.ca_key_file.read_bytes())
        now = datetime.now(UTC)
        revoked = {serial_of(ca, cert.read_bytes()): now for cert in certificates}
        self.crl_file.write_bytes(build_crl(ca, revoked, now=now))

    def reload(self) -> None:
        """SIGHUP, as ``systemctl reload mosquitto`` does: ACL, passwords, CRL read again."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        self.process.send_signal(signal.SIGHUP)

    def write_config(self) -> None:
        values = {
            "vehicle_listener": f"{self.cert_port} {self.host}",
            "service_listener": f"{self.port} {self.host}",
            "cafile": str(self.pki.ca_file),
            "certfile": str(self.pki.cert_file),
            "keyfile": str(self.pki.key_file),
            "crlfile": str(self.crl_file),
            "password_file": str(self.password_file),
            "acl_file": str(self.acl_file),
            "persistence_location": f"{self.workdir}/",
            "autosave_interval": "1",
            # as root, mosquitto would switch to the mosquitto user, which cannot read this dir
            "user": pwd.getpwuid(os.geteuid()).pw_name,
        }
        self.conf_path.write_text(render_conf(values))
