"""A small HTTP/1.1 webhook sender on asyncio streams: the fast alternative to ``HttpxSender``.

Why: httpx + httpcore spend 1.4-3 ms of CPU per request on the 2-core benchmark machine, which
caps one process at ~650 webhooks/s; this sender spends ~0.05 ms (docs/benchmarks.md). It does
only what a webhook POST needs: keep-alive connections per endpoint, TLS verified with the given
context (SNI and host name checked), Content-Length or chunked or close-delimited answers, no
redirects (a 3xx is just a status). Header values with CR or LF are refused, never sent.
Against hostile endpoints it keeps the same promises as ``backend.webhooks`` (one deadline per
attempt, answers read up to a cap, only addresses the ``NetworkPolicy`` allows, coarse failure
texts): the head of an answer is bounded too (``MAX_HEAD`` bytes in all), and a body longer than
``max_answer_bytes`` is not read: the connection is closed instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import defaultdict
from urllib.parse import urlsplit

from backend.egress import STRICT, NetworkPolicy
from backend.errors import DeliveryError
from backend.webhooks import (
    MAX_ANSWER_BYTES,
    NOT_HTTPS,
    TRANSPORT_ERRORS,
    Answer,
    WebhookRequest,
    failure,
    resolve_checked,
)

MAX_HEAD = 64 * 1024  # status line and headers together

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Reused(Exception):
    """A kept-alive connection was closed by the server before it answered."""


class Http1Sender:
    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
        user_agent: str = "edgemon-backend",
        policy: NetworkPolicy = STRICT,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.context = verify
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.allow_insecure_http = allow_insecure_http
        self.user_agent = user_agent
        self.policy = policy
        self.max_answer_bytes = max_answer_bytes
        self._idle: defaultdict[tuple[str, str, int], list[Stream]] = defaultdict(list)

    async def send(self, request: WebhookRequest) -> Answer:
        parts = urlsplit(request.url)
        if parts.scheme != "https" and not (self.allow_insecure_http and parts.scheme == "http"):
            raise DeliveryError(NOT_HTTPS, retryable=False)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        head = self._head(request, parts.path or "/", parts.query, parts.netloc)
        key = (parts.scheme, host, port)
        try:
            async with asyncio.timeout(self.timeout):  # the whole attempt, answer included
                return await self._exchange(key, head, request.body)
        except TRANSPORT_ERRORS as exc:  # IncompleteReadError is an EOFError
            raise failure(exc) from exc

    def _head(self, request: WebhookRequest, path: str, query: str, netloc: str) -> bytes:
        target = f"{path}?{query}" if query else path
        lines = [
            f"POST {target} HTTP/1.1",
            f"Host: {netloc.rsplit('@', 1)[-1]}",
            f"User-Agent: {self.user_agent}",
            "Content-Type: application/json",
            f"Content-Length: {len(request.body)}",
        ]
        for name, value in request.headers:
            if any(c in name + value for c in "\r\n\0"):
                raise DeliveryError(f"refused: header {name!r} has a line break", retryable=False)
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")

    async def _exchange(self, key: tuple[str, str, int], head: bytes, body: bytes) -> Answer:
        idle = self._idle[key]
        while idle:  # a kept-alive connection first; the server may have closed it meanwhile
            stream = idle.pop()
            try:
                return await self._roundtrip(key, stream, head, body, reused=True)
            except _Reused:
                continue
        async with asyncio.timeout(self.connect_timeout):
            stream = await self._open(key)
        return await self._roundtrip(key, stream, head, body, reused=False)

    async def _open(self, key: tuple[str, str, int]) -> Stream:
        """Connect to the first reachable checked address of the host; TLS verifies the
        host name itself (``server_hostname``), not the address."""
        scheme, host, port = key
        addresses = await resolve_checked(host, port, self.policy)
        for address in addresses[:-1]:
            try:
                return await self._connect(scheme, host, address, port)
            except OSError:
                continue  # TLS failures (ssl.SSLError is an OSError) try the next one as well
        return await self._connect(scheme, host, addresses[-1], port)

    async def _connect(self, scheme: str, host: str, address: str, port: int) -> Stream:
        if scheme == "https":
            return await asyncio.open_connection(
                address, port, ssl=self.context, server_hostname=host, limit=MAX_HEAD
            )
        return await asyncio.open_connection(address, port, limit=MAX_HEAD)

    async def _roundtrip(
        self, key: tuple[str, str, int], stream: Stream, head: bytes, body: bytes, *, reused: bool
    ) -> Answer:
        reader, writer = stream
        keep = False
        try:
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                if reused:
                    raise _Reused
                raise ConnectionResetError("the server closed the connection without answering")
            answer, keep = await self._read_answer(reader, status_line)
            return answer
        except (ConnectionResetError, BrokenPipeError) as exc:
            if reused:
                raise _Reused from exc
            raise
        finally:
            if keep:
                self._idle[key].append(stream)
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _read_answer(
        self, reader: asyncio.StreamReader, status_line: bytes
    ) -> tuple[Answer, bool]:
        version, code = status_line.decode("latin-1").split(" ", 2)[:2]
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
        status = int(code)
        headers = await self._read_headers(reader, len(status_line))
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if status in (204, 304) or 100 <= status < 200:
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            keep = await self._skip_chunked(reader) and keep
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if length < 0:
                raise ValueError("a negative Content-Length")
            if length > self.max_answer_bytes:
                keep = False  # not read: closing is cheaper than reading it
            else:
                await reader.readexactly(length)
        else:
            keep = False  # delimited by the close: nothing more to read for us
        return Answer(status, headers.get("retry-after")), keep

    @staticmethod
    async def _read_headers(reader: asyncio.StreamReader, used: int) -> dict[str, str]:
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise ConnectionResetError("the answer ended inside its headers")
            used += len(line)
            if used > MAX_HEAD:
                raise ValueError(f"an answer head longer than {MAX_HEAD} bytes")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def _skip_chunked(self, reader: asyncio.StreamReader) -> bool:
        total = 0
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size < 0:
                raise ValueError("a negative chunk size")
            if size == 0:
                for _ in range(100):  # trailers, bounded like the head
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        return True
                return False
            total += size
            if total > self.max_answer_bytes:
                return False
            await reader.readexactly(size + 2)

    async def close(self) -> None:
        for streams in self._idle.values():
            for _reader, writer in streams:
                writer.close()
        self._idle.clear()
