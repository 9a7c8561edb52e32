"""The API's bodies pass the guard: 413 beyond ``max_request_bytes`` (announced or streamed),
400 for JSON too deep, numbers too long or lone surrogates (a deep body was a 500 RecursionError),
``/healthz`` 503 once a part has died, and fuzzed bodies get only documented answers."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():  # starlette 1.x suggests httpx2 for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from backend.api.routes import ApiContext, Part, build_api
from backend.config import LimitsConfig
from backend.metrics import Metrics
from backend.monitor_channel import MemoryMonitorChannel
from backend.store.sqlite import SqliteStore
from tests.backend.conftest import TOKEN, VIN, ManualClock, api_tokens, monitor_definition

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
LIMIT = 8192
CREATE = f"/vehicles/{VIN}/monitors"
VALID = json.dumps(monitor_definition("https://hooks.example/in")).encode()


def _context(store: SqliteStore, failing: list[str] | None = None) -> ApiContext:
    return ApiContext(
        store=store,
        channel=MemoryMonitorChannel(),
        metrics=Metrics(),
        tokens=api_tokens(),  # TOKEN: admin
        clock=ManualClock(),
        limits=LimitsConfig(max_request_bytes=LIMIT),
        health=lambda: {name: Part(False, "died") for name in failing or []},
    )


@pytest.fixture
def client(store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(build_api(_context(store))) as c:
        yield c


def _problem(response: Any) -> str:
    body = response.json()
    assert body["code"] == response.status_code * 100
    return str(body["problems"][0]["message"] if body["problems"] else body["message"])


def test_a_body_announced_too_large_is_refused_with_413(client: TestClient) -> None:
    response = client.post(CREATE, content=b" " * (LIMIT + 1), headers=AUTH)
    assert response.status_code == 413
    assert str(LIMIT) in _problem(response)


def test_a_streamed_body_without_length_is_cut_at_the_limit(client: TestClient) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 64 KiB offered in 1 KiB chunks, no Content-Length
            sent.append(1024)
            yield b" " * 1024

    response = client.post(CREATE, content=chunks(), headers=AUTH)
    assert response.status_code == 413
    assert "content-length" not in {k.lower() for k in response.request.headers}


def test_a_body_at_the_limit_is_read(client: TestClient) -> None:
    padded = VALID + b" " * (LIMIT - len(VALID))
    assert client.post(CREATE, content=padded, headers=AUTH).status_code == 202


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[" * 2000 + b"]" * 2000, "nested"),  # was a 500 (RecursionError)
        (VALID.replace(b'"retryNumber": 3', b'"retryNumber": ' + b"9" * 5000), "number of 5000"),
        (VALID.replace(b'"retryNumber": 3', b'"retryNumber": ' + b"9" * 60), "number of 60"),
        (VALID.replace(b'"oil hot"', b'"oil \\ud800"'), "surrogate"),
        (VALID.replace(b'"retryNumber": 3', b'"retryNumber": NaN'), "NaN"),
        (b"\xff", "UTF-8"),
    ],
)
def test_hostile_json_is_a_400_not_a_500(client: TestClient, body: bytes, words: str) -> None:
    response = client.post(CREATE, content=body, headers=AUTH)
    assert response.status_code == 400
    assert words in _problem(response)


def test_status_bodies_pass_the_same_guard(client: TestClient) -> None:
    mid = client.post(CREATE, content=VALID, headers=AUTH).json()["monitorId"]
    url = f"{CREATE}/{mid}/status"
    deep = b'{"status":' + b"[" * 100 + b"]" * 100 + b"}"
    assert client.put(url, content=deep, headers=AUTH).status_code == 400
    assert client.put(url, content=b" " * (LIMIT + 1), headers=AUTH).status_code == 413
    assert client.put(url, json={"status": "Paused"}, headers=AUTH).status_code == 202


def test_healthz_fails_once_a_part_has_died(store: SqliteStore) -> None:
    failing: list[str] = []
    with TestClient(build_api(_context(store, failing))) as c:
        ok = c.get("/healthz").json()
        assert ok["status"] == "ok" and ok["failing"] == [] and ok["parts"]["store"]["ok"]
        failing.append("ingest")
        response = c.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["failing"] == ["ingest"]
    assert body["parts"]["ingest"] == {"ok": False, "detail": "died"}
    assert body["parts"]["store"]["ok"] is True


# -- fuzzing the bodies -------------------------------------------------------------------------

_HOLE = "__hole__"
_FRAGMENTS = (
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=10,
    ).map(json.dumps)
    | st.integers(1, 4000).map(lambda n: "[" * n + "]" * n)
    | st.integers(1, 200).map(lambda n: "7" * n)
    | st.text(st.characters(categories=["Cs", "Cc", "Lo"]), max_size=8).map(json.dumps)
)
_PATHS = [
    ("label",),
    ("subscribeParam", "retryPolicy", "retryNumber"),
    ("subscribeParam", "retryPolicy", "policy"),
    ("subscribeParam", "callback", "webhook", "target"),
    ("subscribeParam", "callback", "webhook", "attributes"),
    ("triggerParam", "triggers"),
    ("triggerParam", "boolExp"),
    ("extendedEventParam",),
]


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    obj: Any = json.loads(VALID)
    *parents, key = draw(st.sampled_from(_PATHS))
    holder = obj
    for name in parents:
        holder = holder[name]
    holder[key] = _HOLE
    return json.dumps(obj).replace(f'"{_HOLE}"', draw(_FRAGMENTS)).encode()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300) | _bodies(), method=st.sampled_from(["POST", "PUT"]))
@example(body=b"[" * 5000, method="POST")
@example(body=VALID.replace(b"3", b"3" + b"0" * 4500), method="POST")
def test_fuzzed_bodies_get_only_documented_answers(
    client: TestClient, body: bytes, method: str
) -> None:
    url = CREATE if method == "POST" else f"{CREATE}/m-missing"
    response = client.request(method, url, content=body, headers=AUTH)  # a 500 raises here
    assert response.status_code in ({202, 400, 413} if method == "POST" else {404})
    if response.status_code != 202:
        assert response.json()["code"] == response.status_code * 100
