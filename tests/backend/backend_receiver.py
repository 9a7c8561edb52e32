"""A small HTTPS webhook receiver for tests and the benchmark: asyncio in its own thread,
certificates from a trustme test CA, answers chosen per request by ``respond``."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer_port: int = 0  # the sender's TCP port: which process sent it


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass
class CertAuthority:
    ca: trustme.CA
    ca_file: Path

    @classmethod
    def create(cls, workdir: Path) -> CertAuthority:
        ca = trustme.CA()
        ca_file = workdir / "test-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca, ca_file)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@dataclass
class Receiver:
    """``url`` is ``https://127.0.0.1:<port>``; ``requests`` lists what arrived, in order."""

    context: ssl.SSLContext | None
    respond: Callable[[Received], Reply] = lambda _r: Reply(200)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context, backlog=512)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="receiver", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
                self._arrived.wait(left)
            return list(self.requests)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError,
                                 ValueError, asyncio.CancelledError):  # fmt: skip
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, target, _version = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = raw.decode().partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                peer = writer.get_extra_info("peername") or ("", 0)
                request = Received(method, target, headers, body, time.time(), int(peer[1]))
                reply = self.respond(request)
                with self._arrived:
                    self.requests.append(request)
                    self._arrived.notify_all()
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
                writer.write(
                    f"HTTP/1.1 {reply.status} Status\r\ncontent-length: 0\r\n{extra}\r\n".encode()
                )
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()
