"""Hostile webhook endpoints against both senders (a contract test, issue 12 findings 5 and 7):
an endless body is cut at the cap, a dripping answer ends at the attempt's deadline, SSRF
targets are refused before any connection, a name is connected to by its checked address while
TLS still verifies the name, and failure texts never quote what answered."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backend.delivery.egress import LOOPBACK_ALLOWED, STRICT, NetworkPolicy
from backend.delivery.webhooks import (
    BAD_ANSWER,
    CONNECTION_FAILED,
    POLICY_REFUSED,
    TIMED_OUT,
    TLS_FAILED,
    AiohttpSender,
    Answer,
    WebhookRequest,
    resolve_checked,
)
from backend.errors import DeliveryError
from tests.backend.backend_receiver import CertAuthority
from tests.backend.hostile_endpoint import (
    Answer as Behaviour,
)
from tests.backend.hostile_endpoint import (
    HostileEndpoint,
    drip,
    endless_body,
    endless_chunks,
    raw,
)
from tests.support.mosquitto import free_port

SENDERS: dict[str, Any] = {"aiohttp": AiohttpSender}
HANG_GUARD = 60.0  # only so that a regression fails instead of hanging the run
Start = Callable[..., HostileEndpoint]


@pytest.fixture(params=sorted(SENDERS))
def sender_kind(request: pytest.FixtureRequest) -> Any:
    return SENDERS[request.param]


@pytest.fixture
def endpoints(test_ca: CertAuthority) -> Iterator[Start]:
    started: list[HostileEndpoint] = []

    def start(answer: Behaviour, *, context: ssl.SSLContext | None = None) -> HostileEndpoint:
        server = HostileEndpoint(answer, context or test_ca.server_context()).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def send(
    kind: Any,
    ca: CertAuthority,
    url: str,
    *,
    policy: NetworkPolicy = LOOPBACK_ALLOWED,
    timeout: float = 5.0,
) -> Answer | DeliveryError:
    async def main() -> Answer | DeliveryError:
        sender = kind(verify=ca.client_context(), timeout=timeout, policy=policy)
        request = WebhookRequest(url + "/hook", (("X-Customer", "c1"),), b'{"monitorId":"m"}')
        try:
            async with asyncio.timeout(HANG_GUARD):
                return await sender.send(request)  # type: ignore[no-any-return]
        except DeliveryError as exc:
            return exc
        finally:
            await sender.close()

    return asyncio.run(main())


@pytest.mark.parametrize("answer", [endless_body, endless_chunks])
def test_an_endless_body_is_cut_after_the_cap(
    sender_kind: Any, test_ca: CertAuthority, endpoints: Start, answer: Behaviour
) -> None:
    server = endpoints(answer)
    assert send(sender_kind, test_ca, server.url) == Answer(200)
    for _ in range(200):  # the server notices the cut on its next write
        if server.cut_after:
            break
        asyncio.run(asyncio.sleep(0.05))
    (written,) = server.cut_after
    # what the server got out before the cut: socket buffers, not the body (it never ends)
    assert written < 32 * 1024 * 1024


def test_a_dripping_answer_ends_at_the_deadline(
    sender_kind: Any, test_ca: CertAuthority, endpoints: Start
) -> None:
    server = endpoints(drip(every=0.2))  # every read is quick; only a deadline ends it
    outcome = send(sender_kind, test_ca, server.url, timeout=1.5)
    assert isinstance(outcome, DeliveryError)
    assert str(outcome) == TIMED_OUT and outcome.retryable


def test_an_endless_head_is_a_bad_answer(
    sender_kind: Any, test_ca: CertAuthority, endpoints: Start
) -> None:
    server = endpoints(raw(b"HTTP/1.1 200 OK\r\n" + b"X-Many: headers\r\n" * 20000))
    outcome = send(sender_kind, test_ca, server.url)
    assert isinstance(outcome, DeliveryError) and str(outcome) == BAD_ANSWER


def test_ssrf_targets_are_refused_and_nothing_connects(
    sender_kind: Any, test_ca: CertAuthority, endpoints: Start
) -> None:
    listener = endpoints(raw(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"))
    port = listener.port
    targets = [
        listener.url,
        f"https://localhost:{port}",  # a name resolving to loopback
        f"https://[::1]:{port}",
        f"https://2130706433:{port}",  # 127.0.0.1 as one number
        f"https://[::ffff:127.0.0.1]:{port}",
        "https://169.254.169.254",  # cloud metadata
        "https://10.0.0.1",
    ]
    for target in targets:
        outcome = send(sender_kind, test_ca, target, policy=STRICT)
        assert isinstance(outcome, DeliveryError), target
        assert str(outcome) == POLICY_REFUSED and not outcome.retryable, target
    assert listener.connections == 0
    # the same listener, allowlisted, is reached: the refusal was the policy's
    assert send(sender_kind, test_ca, listener.url) == Answer(200)
    assert listener.connections == 1


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names answered by this table (a DNS we control); everything else by the system."""
    table: dict[str, list[str]] = {}
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: asyncio.BaseEventLoop, host: Any, port: Any, **kw: Any) -> Any:
        if host in table:
            table.setdefault("#asked", []).append(host)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in table[host]
            ]
        return await real(self, host, port, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return table


def test_a_name_is_refused_when_any_address_is_and_resolved_once(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["rebind.test"] = ["127.0.0.1", "10.0.0.7"]
    fake_dns["twice.test"] = ["127.0.0.1", "127.0.0.2"]

    async def main() -> tuple[DeliveryError | None, list[str]]:
        try:
            await resolve_checked("rebind.test", 443, LOOPBACK_ALLOWED)
        except DeliveryError as exc:
            refused = exc
        return refused, await resolve_checked("twice.test", 443, LOOPBACK_ALLOWED)

    refused, addresses = asyncio.run(main())
    assert refused is not None and str(refused) == POLICY_REFUSED
    assert addresses == ["127.0.0.1", "127.0.0.2"]
    assert fake_dns["#asked"] == ["rebind.test", "twice.test"]


def test_a_name_is_connected_to_by_address_and_tls_checks_the_name(
    sender_kind: Any, test_ca: CertAuthority, endpoints: Start, fake_dns: dict[str, list[str]]
) -> None:
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    test_ca.ca.issue_cert("hooks.test").configure_cert(context)  # the name only, no address
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    server = endpoints(raw(b"HTTP/1.1 204 No Content\r\n\r\n"), context=context)
    fake_dns["hooks.test"] = ["127.0.0.1"]
    fake_dns["other.test"] = ["127.0.0.1"]
    assert send(sender_kind, test_ca, f"https://hooks.test:{server.port}") == Answer(204)
    assert names == ["hooks.test"]  # SNI is the name, while the socket went to 127.0.0.1
    wrong = send(sender_kind, test_ca, f"https://other.test:{server.port}")
    assert isinstance(wrong, DeliveryError) and str(wrong) == TLS_FAILED


@pytest.mark.parametrize(
    ("tls", "answer", "expected"),
    [
        (False, raw(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu\r\n", read_first=False), {TLS_FAILED}),
        (True, raw(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu\r\n\r\n"), {BAD_ANSWER}),
        (True, raw(b"220 mail.internal ESMTP Postfix\r\n\r\n"), {BAD_ANSWER}),
        # closed without a word: httpcore calls it a protocol error, the builtin a reset
        (True, raw(b""), {CONNECTION_FAILED, BAD_ANSWER}),
    ],
)
def test_failure_texts_do_not_quote_what_answered(
    sender_kind: Any, test_ca: CertAuthority, tls: bool, answer: Behaviour, expected: set[str]
) -> None:
    server = HostileEndpoint(answer, test_ca.server_context() if tls else None).start()
    try:
        https = server.url.replace("http://", "https://")
        outcome = send(sender_kind, test_ca, https)
    finally:
        server.stop()
    assert isinstance(outcome, DeliveryError) and str(outcome) in expected


def test_a_closed_port_is_a_connection_failure(sender_kind: Any, test_ca: CertAuthority) -> None:
    outcome = send(sender_kind, test_ca, f"https://127.0.0.1:{free_port()}")
    assert isinstance(outcome, DeliveryError) and str(outcome) == CONNECTION_FAILED
