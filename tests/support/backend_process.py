"""`python -m backend run` as a real process for tests: its backend.toml, its log in a file, ready
when its port answers and its ingest has subscribed, stopped (or killed) by its PID.

Several test modules once carried their own copy of this; what differs between them (scopes,
webhook limits, extra sections, the roles run) is a keyword here."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.backend.backend_receiver import CertAuthority
from tests.backend.conftest import SECRET, TOKEN
from tests.support.mosquitto import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[2]
ALL_SCOPES = ("monitors:read", "monitors:write", "deliveries:read", "admin")
LOOPBACK = ("127.0.0.0/8",)
READY = "ingest subscribed"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_STARTS = itertools.count(1)  # start markers unique even when two processes share a log


@dataclass(frozen=True)
class BackendConfig:
    """A written backend.toml and the API port it names (None: no [api] section)."""

    path: Path
    port: int | None


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a JSON string of ASCII text is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _table(name: str, body: Mapping[str, Any]) -> list[str]:
    """``[name]`` with its plain keys first, then its sub-tables and arrays of tables (TOML wants
    a table's keys before the next header)."""
    lines = [f"[{name}]"]
    nested: list[str] = []
    for key, value in body.items():
        path = f"{name}.{_key(key)}"
        if isinstance(value, Mapping):
            nested += _table(path, value)
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                nested += [f"[[{path}]]", *_table(path, item)[1:]]
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    return lines + nested


def toml_text(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A tiny TOML writer for backend configs: tables of strings, numbers, booleans, lists,
    sub-tables and arrays of tables. Whatever it writes is read back to catch a slip."""
    text = "".join(
        line + "\n" for name, body in sections.items() for line in _table(_key(name), body)
    )
    tomllib.loads(text)
    return text


def write_backend_config(
    directory: Path,
    broker: Mosquitto,
    *,
    client_id: str,
    ca: CertAuthority | None = None,
    api: bool = True,
    scopes: Sequence[str] = ALL_SCOPES,
    tokens: Sequence[Mapping[str, Any]] = (),
    allow_networks: Sequence[str] | None = LOOPBACK,
    poll_interval: float | None = 0.05,
    mqtt: Mapping[str, Any] | None = None,
    webhooks: Mapping[str, Any] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    extra: str = "",
) -> BackendConfig:
    """Write ``directory/backend.toml``: the store in ``directory/backend.db``; with ``api``, a
    free port and TOKEN with ``scopes`` followed by ``tokens``; the broker as ``client_id``;
    webhooks signed with SECRET, trusting ``ca``, to ``allow_networks`` (None: the default);
    the dispatcher polling every ``poll_interval`` (None: no [dispatcher] section).

    ``mqtt`` and ``webhooks`` add keys (or sub-tables) to those sections, ``sections`` adds whole
    sections after them, ``extra`` is TOML text appended as it is."""
    config: dict[str, Mapping[str, Any]] = {"store": {"path": directory / "backend.db"}}
    port = free_port() if api else None
    if port is not None:
        config["api"] = {
            "port": port,
            "tokens": [{"token": TOKEN, "scopes": list(scopes)}, *tokens],
        }
    config["mqtt"] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": client_id,
        **(mqtt or {}),
    }
    hooks: dict[str, Any] = {"default_secret": SECRET}
    if ca is not None:
        hooks["ca_bundle"] = ca.ca_file
    if allow_networks is not None:
        hooks["allow_networks"] = list(allow_networks)
    config["webhooks"] = {**hooks, **(webhooks or {})}
    if poll_interval is not None:
        config["dispatcher"] = {"poll_interval": poll_interval}
    config.update(sections or {})
    path = directory / "backend.toml"
    path.write_text(toml_text(config) + extra)
    return BackendConfig(path, port)


class BackendProcess:
    """The backend as a process: `python -m backend run -c CONFIG [--role R ...]` (or ``module``
    with its own arguments), started with a marker in its appended log so that each start's lines
    can be told apart, ready once its port answers and ``ready`` is logged."""

    def __init__(
        self,
        config: BackendConfig,
        *,
        roles: Sequence[str] = (),
        module: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        ready: str | None = READY,
        ready_timeout: float = 30.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.config = config
        self.port = config.port
        role_args = [arg for role in roles for arg in ("--role", role)]
        self.args = list(module or ["backend", "run", "-c", str(config.path), *role_args])
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or config.path.parent / "backend.log"
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.marker = ""

    @property
    def url(self) -> str:
        assert self.port is not None, "this backend runs no API"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> BackendProcess:
        assert not self.running(), "already running"
        self.marker = f"---- backend start {next(_STARTS)}\n"
        with self.log_path.open("ab") as log:
            log.write(self.marker.encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + self.ready_timeout
            if self.port is not None:
                while not self._port_open():
                    self._alive_until(deadline, f"port {self.port} never answered")
            if self.ready is not None:
                self.wait_log(self.ready, deadline - time.monotonic())
        except BaseException:
            self.stop()  # a failed start leaves no process behind
            raise
        return self

    def _port_open(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex(("127.0.0.1", self.port or 0)) == 0

    def _alive_until(self, deadline: float, what: str) -> None:
        """Fail with the log's tail if the process has exited or ``deadline`` has passed."""
        assert self.running(), (
            f"the backend exited ({self.proc and self.proc.returncode}):\n{self.tail()}"
        )
        assert time.monotonic() < deadline, f"{what}:\n{self.tail()}"
        time.sleep(0.05)

    def log(self) -> str:
        """This start's lines of the log."""
        return self.log_path.read_text(errors="replace").split(self.marker)[-1]

    def tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self._alive_until(deadline, f"{text!r} never logged")

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics").text

    def metric(self, name: str, reason: str | None = None) -> float:
        """The sample ``name`` (with ``reason="..."`` as its one label), 0 when absent."""
        key = name if reason is None else f'{name}{{reason="{reason}"}}'
        for line in self.metrics().splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_metric(self, name: str, reason: str, value: float, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.metric(name, reason) < value:
            assert time.monotonic() < deadline, f"{name}{{{reason}}} stayed below {value}"
            time.sleep(0.05)

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz").status_code == 200

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``stop_timeout``: the exit code of a
        clean stop, None when it had to be killed or was not running."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is not None:
            return proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:  # a blocked event loop never runs its SIGTERM handler
            proc.kill()
            proc.wait(10)
            return None

    def kill(self) -> int:
        """SIGKILL now (crash tests): the exit code, -SIGKILL unless it had already exited."""
        assert self.proc is not None, "not started"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGKILL)
        return proc.wait(10)

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
