"""Sending one webhook request: the ``WebhookSender`` interface, its httpx implementation and an
in-memory twin for unit tests.

Transport failures become ``DeliveryError`` here, at the edge; HTTP answers are returned as
``Answer`` and judged by the dispatcher. Redirects are never followed (a 3xx is a failure). Plain
http is refused unless the development switch ``allow_insecure_http`` is on.

A webhook endpoint may be hostile (issue 12, findings 5 and 7), so every sender:
- gives each attempt one deadline, ``timeout``, for resolution, connection, TLS, request and
  answer together (a server dripping a byte every few seconds cannot hold an attempt open);
- reads at most ``max_answer_bytes`` of an answer body, raw (never decompressed), then closes
  the connection (an endless body cannot grow the process);
- resolves the target once, refuses it when any address is not allowed by the
  ``NetworkPolicy`` (backend.egress), and connects only to those checked addresses while TLS
  still verifies the target's host name (SNI and certificate);
- words every failure as one of the coarse ``FAILURES`` below: the attempt history is readable
  through the API, and a text quoting what answered would make the backend a port scanner for
  whoever writes monitors. The details go to the debug log and the exception chain.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpcore
import httpx

from backend.egress import STRICT, NetworkPolicy, literal_address
from backend.errors import DeliveryError

log = logging.getLogger(__name__)

TIMED_OUT = "timed out"
CONNECTION_FAILED = "connection failed"
TLS_FAILED = "TLS failed"
BAD_ANSWER = "bad answer"
POLICY_REFUSED = "refused by network policy"
NOT_HTTPS = "refused: the target is not https://"
INVALID_TARGET = "refused: the target is not a valid URL"
FAILURES = (
    TIMED_OUT,
    CONNECTION_FAILED,
    TLS_FAILED,
    BAD_ANSWER,
    POLICY_REFUSED,
    NOT_HTTPS,
    INVALID_TARGET,
)
MAX_ANSWER_BYTES = 64 * 1024
MAX_ADDRESSES = 8  # tried in the resolver's order, all of them checked


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None = None


class WebhookSender(Protocol):
    async def send(self, request: WebhookRequest) -> Answer: ...

    async def close(self) -> None: ...


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Verify against the system CAs, or only against a configured bundle."""
    if ca_bundle is None:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(ca_bundle))


async def resolve_checked(host: str, port: int, policy: NetworkPolicy) -> list[str]:
    """Resolve ``host`` once and return the addresses to connect to, every one of them allowed
    by ``policy``; a name with any refused address is refused as a whole (a rebinding name
    may list a public address first and a private one after)."""
    literal = literal_address(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError) as exc:
            raise DeliveryError(CONNECTION_FAILED) from exc
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for ip in found:
        why = policy.refusal(ip)
        if why is not None:
            log.info("webhook target %s refused: it resolves to %s (%s)", host, ip, why)
            raise DeliveryError(POLICY_REFUSED, retryable=False)
    if not found:
        raise DeliveryError(CONNECTION_FAILED)
    return [str(ip) for ip in found[:MAX_ADDRESSES]]


TRANSPORT_ERRORS = (
    DeliveryError,
    TimeoutError,
    OSError,
    EOFError,
    ValueError,  # a malformed length, chunk size or status line
    httpx.HTTPError,
    httpx.InvalidURL,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)


def failure(exc: BaseException) -> DeliveryError:
    """The coarse, customer-readable ``DeliveryError`` for one of ``TRANSPORT_ERRORS``."""
    if isinstance(exc, DeliveryError):
        return exc
    log.debug("webhook attempt failed: %r", exc)
    if isinstance(exc, (TimeoutError, httpx.TimeoutException, httpcore.TimeoutException)):
        return DeliveryError(TIMED_OUT)
    if isinstance(exc, httpx.InvalidURL):
        return DeliveryError(INVALID_TARGET, retryable=False)
    if _is_tls(exc):
        return DeliveryError(TLS_FAILED)
    if isinstance(exc, (OSError, httpx.TransportError, httpcore.NetworkError, EOFError)):
        return DeliveryError(CONNECTION_FAILED)
    return DeliveryError(BAD_ANSWER)


class _GuardedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's default network backend behind the policy: ``connect_tcp`` gets the URL's
    host, connects to a checked address instead, and httpcore then starts TLS with the URL's
    host as ``server_hostname``, so the certificate is still checked against the name."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._policy = policy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_checked(host, port, self._policy)
                for address in addresses[:-1]:
                    try:
                        return await self._inner.connect_tcp(address, port, None, local_address)
                    except httpcore.ConnectError:
                        continue
                return await self._inner.connect_tcp(addresses[-1], port, None, local_address)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("connect timed out") from exc

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DeliveryError(POLICY_REFUSED, retryable=False)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _AnswerStream(httpx.AsyncByteStream):
    def __init__(self, parts: AsyncIterable[bytes]) -> None:
        self._parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._parts:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._parts, "aclose", None)
        if close is not None:
            await close()


class _GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool that connects through ``_GuardedNetwork``
    (httpx's own transport does not take a network backend)."""

    def __init__(self, verify: ssl.SSLContext, policy: NetworkPolicy) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=None,
            max_keepalive_connections=200,
            network_backend=_GuardedNetwork(policy),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        answer = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(answer.stream, AsyncIterable)
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=_AnswerStream(answer.stream),
            extensions=answer.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class HttpxSender:
    """POSTs with one shared ``httpx.AsyncClient``; the pool is unbounded because the dispatcher
    bounds concurrency per endpoint (a global pool limit would let one dead host starve others)."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext,
        connect_timeout: float = 5.0,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
        policy: NetworkPolicy = STRICT,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.allow_insecure_http = allow_insecure_http
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._client = httpx.AsyncClient(
            transport=_GuardedTransport(verify, policy),
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            trust_env=False,
        )

    async def send(self, request: WebhookRequest) -> Answer:
        if not request.url.startswith("https://") and not (
            self.allow_insecure_http and request.url.startswith("http://")
        ):
            raise DeliveryError(NOT_HTTPS, retryable=False)
        headers = {"content-type": "application/json", **dict(request.headers)}
        try:
            async with asyncio.timeout(self.timeout):  # the whole attempt, answer included
                return await self._exchange(request.url, headers, request.body)
        except TRANSPORT_ERRORS as exc:
            raise failure(exc) from exc

    async def _exchange(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        async with self._client.stream("POST", url, content=body, headers=headers) as response:
            read = 0
            async for part in response.aiter_raw():  # raw: a compressed body stays small
                read += len(part)
                if read >= self.max_answer_bytes:
                    break  # leaving the block closes the connection, the rest unread
            return Answer(response.status_code, response.headers.get("retry-after"))

    async def close(self) -> None:
        await self._client.aclose()


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    # httpcore re-raises the ssl error's text without chaining it; never judge an answer's text
    connect = isinstance(exc, (httpx.ConnectError, httpcore.ConnectError))
    return connect and ("SSL" in str(exc) or "certificate" in str(exc))


@dataclass
class MemorySender:
    """In-memory twin: answers from ``script`` (a callable per request), records every request."""

    script: Callable[[WebhookRequest], Answer | DeliveryError] = lambda _r: Answer(200)
    requests: list[WebhookRequest] = field(default_factory=list)
    delay: float = 0.0

    async def send(self, request: WebhookRequest) -> Answer:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        outcome = self.script(request)
        if isinstance(outcome, DeliveryError):
            raise outcome
        return outcome

    async def close(self) -> None:
        return None
