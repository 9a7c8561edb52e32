"""Sending one webhook request: the ``WebhookSender`` interface, its implementation on aiohttp's
client (``AiohttpSender``) and an in-memory twin for unit tests.

Transport failures become ``DeliveryError`` here, at the edge; HTTP answers are returned as
``Answer`` and judged by the dispatcher. Redirects are never followed (a 3xx is a failure). Plain
http is refused unless the development switch ``allow_insecure_http`` is on.

A webhook endpoint may be hostile (issue 12, findings 5 and 7), so every sender:
- gives each attempt one deadline, ``timeout``, for resolution, connection, TLS, request and
  answer together (a server dripping a byte every few seconds cannot hold an attempt open);
- reads at most ``max_answer_bytes`` of an answer body, raw (never decompressed), then closes
  the connection (an endless body cannot grow the process);
- resolves the target once per new connection, refuses it when any address is not allowed by
  the ``NetworkPolicy`` (backend.delivery.egress), and connects only to those checked
  addresses while TLS still verifies the target's host name (SNI and certificate): the check is
  aiohttp's resolver (``_CheckedResolver``); aiohttp skips the resolver for an IP literal, so the
  sender checks a literal host itself before any connection;
- follows no redirect and takes no proxy or ``.netrc`` from the environment (``trust_env``
  off); reads answer heads with bounded lines and at most ``MAX_HEADERS`` headers;
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from backend.delivery.egress import STRICT, NetworkPolicy, literal_address
from backend.errors import DeliveryError

log = logging.getLogger(__name__)

TIMED_OUT = "timed out"
CONNECTION_FAILED = "connection failed"
TLS_FAILED = "TLS failed"
BAD_ANSWER = "bad answer"
POLICY_REFUSED = "refused by network policy"
NOT_HTTPS = "refused: the target is not https://"
INVALID_TARGET = "refused: the target is not a valid URL"
INVALID_HEADER = "refused: a header holds a line break"
FAILURES = (
    TIMED_OUT,
    CONNECTION_FAILED,
    TLS_FAILED,
    BAD_ANSWER,
    POLICY_REFUSED,
    NOT_HTTPS,
    INVALID_TARGET,
    INVALID_HEADER,
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


TRANSPORT_ERRORS = (DeliveryError, TimeoutError, OSError, EOFError, ValueError, aiohttp.ClientError)


def failure(exc: BaseException) -> DeliveryError:
    """The coarse, customer-readable ``DeliveryError`` for one of ``TRANSPORT_ERRORS``."""
    if isinstance(exc, DeliveryError):
        return exc
    log.debug("webhook attempt failed: %r", exc)
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return DeliveryError(TIMED_OUT)
    if isinstance(exc, aiohttp.InvalidURL):
        return DeliveryError(INVALID_TARGET, retryable=False)
    if isinstance(exc, (ssl.SSLError, aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        return DeliveryError(TLS_FAILED)
    if isinstance(exc, (OSError, EOFError, aiohttp.ClientConnectionError)):
        return DeliveryError(CONNECTION_FAILED)
    return DeliveryError(BAD_ANSWER)  # a malformed answer, a payload error, anything else


MAX_HEAD_LINE = 8 * 1024  # one status or header line
MAX_HEADERS = 100
CHUNK = 16 * 1024


class _CheckedResolver(AbstractResolver):
    """Resolves through ``resolve_checked``: only addresses the policy allows come back."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await resolve_checked(host, port, self._policy)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class AiohttpSender:
    """POSTs through one aiohttp session. The pool has no global or per-host limit: the
    dispatcher bounds concurrency per endpoint (a pool limit would let one dead host starve
    the others)."""

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
        self.verify = verify
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.allow_insecure_http = allow_insecure_http
        self.policy = policy
        self.max_answer_bytes = max_answer_bytes
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running loop."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self.verify,
                resolver=_CheckedResolver(self.policy),
                use_dns_cache=False,  # each new connection resolves and checks again
                limit=0,
                limit_per_host=0,
                keepalive_timeout=30.0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout, sock_connect=self.connect_timeout
                ),
                max_line_size=MAX_HEAD_LINE,
                max_field_size=MAX_HEAD_LINE,
                skip_auto_headers=("User-Agent",),
                headers={"user-agent": "edgemon-backend"},
            )
        return self._session

    async def send(self, request: WebhookRequest) -> Answer:
        parts = urlsplit(request.url)
        if parts.scheme != "https" and not (self.allow_insecure_http and parts.scheme == "http"):
            raise DeliveryError(NOT_HTTPS, retryable=False)
        headers = {"content-type": "application/json", **dict(request.headers)}
        if any(c in name + value for name, value in headers.items() for c in "\r\n\0"):
            raise DeliveryError(INVALID_HEADER, retryable=False)  # never sent, not even split
        try:
            self._check_literal(parts.hostname)
            async with asyncio.timeout(self.timeout):  # the whole attempt, answer included
                return await self._exchange(request.url, headers, request.body)
        except TRANSPORT_ERRORS as exc:
            raise failure(exc) from exc

    def _check_literal(self, host: str | None) -> None:
        ip = literal_address(host or "")
        if ip is None:
            return
        why = self.policy.refusal(ip)
        if why is not None:
            log.info("webhook target %s refused (%s)", ip, why)
            raise DeliveryError(POLICY_REFUSED, retryable=False)

    async def _exchange(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        session = self._open()
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            if len(answer.headers) > MAX_HEADERS:
                answer.close()
                raise DeliveryError(BAD_ANSWER)
            read = 0
            while chunk := await answer.content.read(CHUNK):
                read += len(chunk)
                if read >= self.max_answer_bytes:
                    answer.close()  # the connection goes, the rest unread
                    break
            return Answer(answer.status, answer.headers.get("retry-after"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
