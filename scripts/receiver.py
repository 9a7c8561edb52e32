"""A demo HTTPS webhook receiver: verifies the Standard Webhooks signature of every request,
records it and answers 200 (reference §3.3), or a status chosen for fault tests. It can go down
and come back on the same port."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks

from scripts.pki import Pki


@dataclass(frozen=True)
class Notification:
    webhook_id: str
    timestamp: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    arrived: float  # wall clock

    @property
    def events(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.body.get("events", [])
        return found


@dataclass
class Tally:
    accepted: list[Notification] = field(default_factory=list)
    refused: int = 0  # answered with a failure status on purpose
    bad_signature: int = 0


class WebhookReceiver:
    def __init__(
        self,
        pki: Pki,
        secret: str,
        port: int,
        on_notification: Callable[[Notification], None] | None = None,
    ) -> None:
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.tally = Tally()
        self.fail_with: int | None = None  # answer this status instead of 200
        self._verifier = standardwebhooks.Webhook(secret)
        self._on_notification = on_notification
        self._lock = threading.Lock()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(pki.cert_file), str(pki.key_file))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def notifications(self) -> list[Notification]:
        with self._lock:
            return list(self.tally.accepted)

    def _handle(self, handler: BaseHTTPRequestHandler) -> int:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            self._verifier.verify(raw, headers)
            body = json.loads(raw)
        except (standardwebhooks.webhooks.WebhookVerificationError, ValueError):
            with self._lock:
                self.tally.bad_signature += 1
            return 400
        with self._lock:
            if self.fail_with is not None:
                self.tally.refused += 1
                return self.fail_with
            note = Notification(
                headers["webhook-id"],
                int(headers["webhook-timestamp"]),
                handler.path,
                headers,
                body,
                raw,
                time.time(),
            )
            self.tally.accepted.append(note)
        if self._on_notification is not None:
            self._on_notification(note)
        return 200

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                status = receiver._handle(self)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.socket = self._context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
