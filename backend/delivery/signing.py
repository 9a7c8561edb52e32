"""Standard Webhooks signatures (https://www.standardwebhooks.com/, spec "Signature scheme").

``webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` where the key is
the base64 part of a ``whsec_`` secret. The id is the delivery's id, stable across retries; the
timestamp is the attempt's (integer seconds). Pure: ``timestamp`` is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


class SecretError(ValueError):
    """A signing secret is not ``whsec_`` + base64."""


def secret_key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise SecretError("a signing secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError("a signing secret is 'whsec_' followed by base64") from exc
    if len(key) < 16:
        raise SecretError("a signing secret needs at least 16 bytes of key")
    return key


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }
