"""The webhook sender on aiohttp's client: one ``ClientSession`` whose connector keeps
connections alive per endpoint, with the promises of ``backend.webhooks`` against hostile
endpoints:

- the SSRF guard sits in the resolver: ``_CheckedResolver`` returns only addresses the
  ``NetworkPolicy`` allows (a name with any refused address is refused whole); aiohttp skips the
  resolver for an IP literal, so ``send`` checks a literal host itself before any connection.
  TLS still verifies the URL's host name (aiohttp passes it as ``server_hostname``);
- one deadline per attempt (``timeout``), connection, TLS, request and answer together;
- at most ``max_answer_bytes`` of an answer body are read, raw (``auto_decompress=False``);
  past that the connection is closed, not returned to the pool;
- no redirects, no proxies or ``.netrc`` from the environment (``trust_env=False``), and every
  failure is one of the coarse ``webhooks.FAILURES``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from backend.egress import STRICT, NetworkPolicy, literal_address
from backend.errors import DeliveryError
from backend.webhooks import (
    BAD_ANSWER,
    CONNECTION_FAILED,
    INVALID_TARGET,
    MAX_ANSWER_BYTES,
    NOT_HTTPS,
    POLICY_REFUSED,
    TIMED_OUT,
    TLS_FAILED,
    TRANSPORT_ERRORS,
    Answer,
    WebhookRequest,
    failure,
    log,
    resolve_checked,
)

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
        try:
            self._check_literal(parts.hostname)
            async with asyncio.timeout(self.timeout):  # the whole attempt, answer included
                return await self._exchange(request.url, headers, request.body)
        except (*TRANSPORT_ERRORS, aiohttp.ClientError) as exc:
            raise _failure(exc) from exc

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


def _failure(exc: BaseException) -> DeliveryError:
    """aiohttp's exceptions in the coarse words of ``webhooks.FAILURES``."""
    if isinstance(exc, DeliveryError):
        return exc
    log.debug("webhook attempt failed: %r", exc)
    if isinstance(exc, (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)):
        return DeliveryError(TLS_FAILED)
    if isinstance(exc, (aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError)):
        return DeliveryError(TIMED_OUT)
    if isinstance(exc, aiohttp.InvalidURL):
        return DeliveryError(INVALID_TARGET, retryable=False)
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientOSError)):
        return DeliveryError(CONNECTION_FAILED)
    if isinstance(exc, aiohttp.ClientError):
        return DeliveryError(BAD_ANSWER)
    return failure(exc)
