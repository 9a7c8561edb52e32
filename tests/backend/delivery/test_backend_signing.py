"""Standard Webhooks signatures, checked by the independent reference library."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backend.delivery.signing import SecretError, new_secret, secret_key, signature_headers


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    body = b'{"monitorId":"m1","attributes":[],"events":[]}'
    headers = signature_headers(secret_key(secret), "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {
        "monitorId": "m1",
        "attributes": [],
        "events": [],
    }


def test_tampered_body_fails_verification() -> None:
    secret = new_secret()
    headers = signature_headers(secret_key(secret), "msg_1", int(time.time()), b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":1}', headers)


@pytest.mark.parametrize("bad", ["plain", "whsec_!!!", "whsec_c2hvcnQ="])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(SecretError):
        secret_key(bad)
