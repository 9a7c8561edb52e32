"""Sending one webhook request: the ``WebhookSender`` interface, its httpx implementation and an
in-memory twin for unit tests.

Transport failures become ``DeliveryError`` here, at the edge (timeouts, refused connections,
TLS verification failures); HTTP answers are returned as ``Answer`` and judged by the dispatcher.
Redirects are never followed (a 3xx is a failure). Plain http is refused unless the development
switch ``allow_insecure_http`` is on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from backend.errors import DeliveryError

log = logging.getLogger(__name__)


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
    ) -> None:
        self.allow_insecure_http = allow_insecure_http
        self._client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=200),
            trust_env=False,
        )

    async def send(self, request: WebhookRequest) -> Answer:
        if not request.url.startswith("https://") and not (
            self.allow_insecure_http and request.url.startswith("http://")
        ):
            raise DeliveryError("refused: the target is not https://", retryable=False)
        headers = {"content-type": "application/json", **dict(request.headers)}
        try:
            response = await self._client.post(request.url, content=request.body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timeout: {type(exc).__name__}") from exc
        except httpx.ConnectError as exc:
            kind = "TLS error" if _is_tls(exc) else "connection error"
            raise DeliveryError(f"{kind}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"transport error: {type(exc).__name__}: {exc}") from exc
        return Answer(response.status_code, response.headers.get("retry-after"))

    async def close(self) -> None:
        await self._client.aclose()


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "SSL" in str(exc) or "certificate" in str(exc)


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
