"""Hostile webhook endpoints for tests: a raw TCP or TLS server on loopback, in its own thread,
whose ``answer`` coroutine talks to each connection with whatever bytes it likes.

Answers provided: ``endless_body`` (a 200 followed by a body that never ends), ``drip`` (one
byte of an answer every ``every`` seconds, forever), ``raw`` (given bytes, then a close or
silence). The server counts connections and, for the endless body, how much it wrote before the
client cut the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Answer = Callable[["HostileEndpoint", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BLOCK = b"x" * 65536


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request: the head, then Content-Length bytes of body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


async def endless_body(
    server: HostileEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A 200 whose close-delimited body never ends: it writes until the client hangs up."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
    written = 0
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        while not (writer.is_closing() or reader.at_eof()):
            writer.write(BLOCK)
            await writer.drain()
            await asyncio.sleep(0)  # drain may not yield: let the loop see a hang-up
            written += len(BLOCK)
    with server.lock:
        server.cut_after.append(written)


async def endless_chunks(
    server: HostileEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """The same with chunked transfer coding and keep-alive (a client must not wait for 0)."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    written = 0
    with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
        while not (writer.is_closing() or reader.at_eof()):
            writer.write(b"10000\r\n" + BLOCK + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0)  # drain may not yield: let the loop see a hang-up
            written += len(BLOCK)
    with server.lock:
        server.cut_after.append(written)


def drip(every: float) -> Answer:
    """An answer that starts well and then gives one byte every ``every`` seconds, forever:
    each read finishes well within any read timeout, only a deadline ends it."""

    async def answer(
        server: HostileEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            while True:
                for byte in b"X-Drip: a\r\n":
                    if writer.is_closing() or reader.at_eof():
                        return  # the client hung up
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(every)

    return answer


def raw(data: bytes, *, then_close: bool = True, read_first: bool = True) -> Answer:
    """Answers ``data`` whatever was asked, then closes (or stays silent)."""

    async def answer(
        server: HostileEndpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if read_first:
            await read_request(reader)
        writer.write(data)
        await writer.drain()
        if not then_close:
            await asyncio.sleep(3600)

    return answer


@dataclass
class HostileEndpoint:
    """``url`` is ``https://<host>:<port>`` (``http://`` without a TLS context)."""

    answer: Answer
    context: ssl.SSLContext | None = None
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    cut_after: list[int] = field(default_factory=list)  # bytes written before each cut
    lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.context else 'http'}://{self.host}:{self.port}"

    def start(self) -> HostileEndpoint:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, ssl=self.context)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="hostile-endpoint", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError("the hostile endpoint did not start")
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

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self.lock:
            self.connections += 1
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.answer(self, reader, writer)
        with contextlib.suppress(Exception):
            writer.close()
