"""A real anonymous mosquitto for tests and benchmarks: free loopback port, own config, stopped
by its PID, restartable on the same port (broker-outage tests). The process handling is the
demo's (``scripts.broker``); this adds the plain-listener config the tests use."""

from __future__ import annotations

from pathlib import Path

from scripts.broker import BrokerProcess, free_port, wait_for_port

__all__ = ["Mosquitto", "free_port", "wait_for_port"]


class Mosquitto(BrokerProcess):
    """``extra_conf`` is appended after the listener (TLS, ACL, auth, ``user root``...).

    Without it the broker allows anonymous clients on ``127.0.0.1:port``.
    """

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "") -> None:
        super().__init__(workdir, port)
        self.extra_conf = extra_conf

    def config_text(self) -> str:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
        ]
        if "allow_anonymous" not in self.extra_conf and "password_file" not in self.extra_conf:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n" + self.extra_conf + "\n"

    def write_config(self) -> None:
        self.conf_path.write_text(self.config_text())
