"""The webhook sender against answers the trustme receiver does not give: chunked,
close-delimited, a kept-alive connection the server closed, garbage, refused header values.
(Written for the hand-written HTTP/1.1 sender; kept for aiohttp's when that one went.)"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import pytest

from backend.delivery.egress import LOOPBACK_ALLOWED
from backend.delivery.webhooks import AiohttpSender, WebhookRequest
from backend.errors import DeliveryError
from tests.backend.backend_receiver import CertAuthority

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _run(ca: CertAuthority, handler: Handler, requests: list[WebhookRequest]) -> list[object]:
    async def main() -> list[object]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ca.server_context())
        port = server.sockets[0].getsockname()[1]
        sender = AiohttpSender(verify=ca.client_context(), timeout=2.0, policy=LOOPBACK_ALLOWED)
        results: list[object] = []
        for request in requests:
            url = request.url.replace("PORT", str(port))
            try:
                answer = await sender.send(WebhookRequest(url, request.headers, request.body))
                results.append(answer.status)
            except DeliveryError as exc:
                results.append(exc)
        await sender.close()
        server.close()
        return results

    return asyncio.run(main())


def _post(path: str = "/", headers: tuple[tuple[str, str], ...] = ()) -> WebhookRequest:
    return WebhookRequest(f"https://127.0.0.1:PORT{path}", headers, b'{"x":1}')


def test_chunked_and_close_delimited_answers(test_ca: CertAuthority) -> None:
    connections = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await _read_request(reader)
        writer.write(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")  # fmt: skip
        await writer.drain()
        head = await _read_request(reader)  # same connection: kept alive after chunked
        assert head.startswith(b"POST /second HTTP/1.1")
        writer.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nConnection: close\r\n\r\nbye")
        await writer.drain()
        writer.close()

    assert _run(test_ca, handler, [_post("/first"), _post("/second")]) == [201, 503]
    assert len(connections) == 1


def test_a_closed_keep_alive_connection_is_replaced(test_ca: CertAuthority) -> None:
    seen = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # closes without saying so: the sender's idle copy is stale

    assert _run(test_ca, handler, [_post(), _post(), _post()]) == [200, 200, 200]
    assert len(seen) == 3


def test_garbage_and_silence_are_failures(test_ca: CertAuthority) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    (garbage,) = _run(test_ca, handler, [_post()])
    assert isinstance(garbage, DeliveryError) and garbage.retryable

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    (timeout,) = _run(test_ca, silent, [_post()])
    assert isinstance(timeout, DeliveryError) and str(timeout) == "timed out"


def test_header_injection_and_plain_http_are_refused(test_ca: CertAuthority) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing may be sent")

    evil = _post(headers=(("X-Vin", "A\r\nX-Admin: yes"),))
    plain = WebhookRequest("http://127.0.0.1:1/", (), b"{}")
    results = _run(test_ca, handler, [evil, plain])
    assert all(isinstance(r, DeliveryError) and not r.retryable for r in results)


def test_an_untrusted_certificate_is_a_tls_error(
    test_ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = CertAuthority.create(tmp_path_factory.mktemp("other-ca"))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async def main() -> DeliveryError:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=other.server_context())
        port = server.sockets[0].getsockname()[1]
        sender = AiohttpSender(
            verify=ssl.create_default_context(cafile=str(test_ca.ca_file)), policy=LOOPBACK_ALLOWED
        )
        try:
            await sender.send(WebhookRequest(f"https://127.0.0.1:{port}/", (), b"{}"))
        except DeliveryError as exc:
            return exc
        finally:
            server.close()
        raise AssertionError("an untrusted certificate was accepted")

    error = asyncio.run(main())
    assert str(error) == "TLS failed" and error.retryable
