"""Issue 12, finding 6 against the real `edgemon-backend run` process: a monitor with 24 triggers,
a boolExp of 5,000 parentheses and a time trigger in "Europe" are answered 400 with the reason,
while /healthz keeps answering. Before the fix the first stalled the event loop ~25 s (a 2^24-row
truth table; 30 triggers would take hours) and the others were 500s. No timed assertion:
pytest-timeout is the only bound."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.monitors.hostile import deep_parentheses, many_triggers, zone_named
from tests.backend.conftest import TOKEN, VIN
from tests.support.backend_process import BackendProcess, write_backend_config
from tests.support.mosquitto import Mosquitto

AUTH = {"Authorization": f"Bearer {TOKEN}"}
HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "24 triggers": (many_triggers(24), "needs 1 to 10 triggers"),
    "30 triggers": (many_triggers(30), "needs 1 to 10 triggers"),  # 2^30 rows before the fix
    "5,000 parentheses": (deep_parentheses(5000), "characters long"),
    "time zone Europe": (zone_named("Europe"), "unknown time zone 'Europe'"),
}


@pytest.fixture
def backend_api(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    config = write_backend_config(
        tmp_path,
        mosquitto,
        client_id="dos",
        scopes=["monitors:read", "monitors:write", "admin"],
        allow_networks=None,
        poll_interval=None,
    )
    with BackendProcess(config, roles=["api"], ready=None) as backend:
        yield backend.url


@pytest.mark.timeout(120)
def test_hostile_monitors_are_refused_while_healthz_answers(backend_api: str) -> None:
    answers: dict[str, httpx.Response] = {}
    health: list[int] = []

    def post_all() -> None:
        with httpx.Client(base_url=backend_api, headers=AUTH, timeout=120) as client:
            for name, (body, _) in HOSTILE.items():
                answers[name] = client.post(f"/vehicles/{VIN}/monitors", json=body)

    poster = threading.Thread(target=post_all, name="hostile-posts")
    with httpx.Client(base_url=backend_api, timeout=120) as client:
        poster.start()
        while poster.is_alive() or not health:
            health.append(client.get("/healthz").status_code)
    poster.join()
    assert health and set(health) == {200}
    assert set(answers) == set(HOSTILE)
    for name, (_, reason) in HOSTILE.items():
        answer = answers[name]
        assert answer.status_code == 400, (name, answer.text)
        messages = [p["message"] for p in answer.json()["problems"]]
        assert any(reason in m for m in messages), (name, messages)


@pytest.mark.timeout(120)
def test_a_valid_monitor_is_still_accepted_after_them(backend_api: str) -> None:
    with httpx.Client(base_url=backend_api, headers=AUTH, timeout=60) as client:
        for body, _ in HOSTILE.values():
            assert client.post(f"/vehicles/{VIN}/monitors", json=body).status_code == 400
        fine = many_triggers(10)
        assert client.post(f"/vehicles/{VIN}/monitors", json=fine).status_code == 202
