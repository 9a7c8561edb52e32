"""The demo's webhook receiver: it accepts what the backend's signing produces and refuses a
forged or tampered request (so "signature verified" in the demo means something)."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx

from backend.delivery.signing import secret_key, signature_headers
from scripts.broker import free_port
from scripts.pki import make_pki
from scripts.receiver import WebhookReceiver

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
BODY = json.dumps({"monitorId": "m1", "attributes": [], "events": []}).encode()


def _post(receiver: WebhookReceiver, ca: Path, headers: dict[str, str], body: bytes) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    answer = httpx.post(f"{receiver.url}/hook", content=body, headers=headers, verify=context)
    return answer.status_code


def test_receiver_checks_signatures_and_can_fail_on_purpose(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    receiver = WebhookReceiver(pki, SECRET, free_port()).start()
    try:
        now = int(time.time())
        good = signature_headers(secret_key(SECRET), "msg_1", now, BODY)
        assert _post(receiver, pki.ca_file, good, BODY) == 200
        assert _post(receiver, pki.ca_file, good, BODY.replace(b"m1", b"m2")) == 400
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
        forged = signature_headers(secret_key(other), "msg_2", now, BODY)
        assert _post(receiver, pki.ca_file, forged, BODY) == 400
        receiver.fail_with = 503
        assert _post(receiver, pki.ca_file, good, BODY) == 503
        assert [n.webhook_id for n in receiver.notifications()] == ["msg_1"]
        assert receiver.tally.bad_signature == 2 and receiver.tally.refused == 1
    finally:
        receiver.stop()
