"""A TLS mosquitto with passwords and a per-vehicle ACL, on a free loopback port, stopped by its
PID. Restartable on the same port (broker-outage faults).

ACL: the backend (and the observer) may read and write everything under the prefix; a vehicle,
whose MQTT username is its VIN, may only publish its own events, status and monitor states and
read its own and its fleet's monitors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from scripts.pki import Pki


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


def acl_text(prefix: str, services: list[str]) -> str:
    lines = []
    for user in services:
        lines += [f"user {user}", f"topic readwrite {prefix}/#", ""]
    lines += [
        "# every other user is a vehicle whose username is its VIN",
        f"pattern write {prefix}/vehicles/%u/events",
        f"pattern readwrite {prefix}/vehicles/%u/status",
        f"pattern readwrite {prefix}/vehicles/%u/monitors/#",
        f"pattern read {prefix}/fleets/+/monitors/#",
    ]
    return "\n".join(lines) + "\n"


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
            wait_for_port(self.host, self.port)
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
    """TLS, passwords and the per-vehicle ACL; persistent, so a restart keeps sessions."""

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        users: dict[str, str],
        services: list[str],
        *,
        prefix: str = "edgemon/v1",
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.pki = pki
        passwords = workdir / "passwd"
        passwords.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        passwords.chmod(0o600)
        subprocess.run([_binary("mosquitto_passwd"), "-U", str(passwords)], check=True)
        (workdir / "acl").write_text(acl_text(prefix, services))
        conf = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwords}",
            f"acl_file {workdir / 'acl'}",
            "persistence true",  # sessions and retained monitors survive a restart
            f"persistence_location {workdir}/",
            "autosave_interval 1",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            f"listener {self.port} {self.host}",
            f"cafile {pki.ca_file}",
            f"certfile {pki.cert_file}",
            f"keyfile {pki.key_file}",
            "tls_version tlsv1.2",
        ]
        if os.geteuid() == 0:
            conf.insert(0, "user root")  # keep access to the files in this private temp dir
        self.conf_path.write_text("\n".join(conf) + "\n")
