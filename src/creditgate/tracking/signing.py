"""Standard Webhooks signatures, pure (https://www.standardwebhooks.com).

A message is signed as ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`` where the
key is the base64 part of a ``whsec_<base64>`` secret. During a secret rotation the header
carries one signature per secret, separated by spaces, so receivers on either secret verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 24
TIMESTAMP_TOLERANCE_S: Final = 300


class SignatureError(ValueError):
    """A webhook whose signature or timestamp does not verify."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    assert secret.startswith(SECRET_PREFIX), "secrets read whsec_<base64>"
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def sign(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(signing_secrets: Sequence[str], message_id: str, timestamp_s: int,
            body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given."""
    assert signing_secrets
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp_s),
            "webhook-signature": " ".join(sign(secret, message_id, timestamp_s, body)
                                          for secret in signing_secrets),
            "content-type": "application/json"}


def verify(secret: str, received: Mapping[str, str], body: bytes, *, now_s: int | None = None,
           tolerance_s: int = TIMESTAMP_TOLERANCE_S) -> None:
    """What a receiver does: raise SignatureError unless one v1 signature matches ``secret``
    (and, when ``now_s`` is given, the timestamp is within ``tolerance_s``)."""
    message_id = received.get("webhook-id", "")
    timestamp = received.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit():
        raise SignatureError("missing webhook-id or webhook-timestamp")
    if now_s is not None and abs(now_s - int(timestamp)) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    expected = sign(secret, message_id, int(timestamp), body)
    for candidate in received.get("webhook-signature", "").split():
        if hmac.compare_digest(candidate, expected):
            return
    raise SignatureError("no signature matches")
