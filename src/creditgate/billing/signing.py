"""Ed25519 signatures on statements.

The signed bytes are the canonical JSON of the statement body (sorted keys, no whitespace,
UTF-8: :func:`creditgate.ledger.journal.canonical_json`). A signed document is::

    {"statement": {...}, "signature": {"algorithm": "Ed25519", "key_id": "...",
                                       "public_key": "<base64>", "value": "<base64>"}}

The embedded public key lets anyone check integrity offline; checking *authenticity* means
comparing it with the key the API serves (``--public-key`` on ``creditgate statement verify``).

Keys: ``CREDITGATE_SIGNING_KEY`` (the 32-byte Ed25519 seed as base64 or hex, or a PEM private
key) wins; otherwise the database keeps one generated key (table ``billing_signing_keys``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from creditgate.errors import InvalidInput
from creditgate.ledger.journal import canonical_json

ENV_SIGNING_KEY: Final = "CREDITGATE_SIGNING_KEY"
ALGORITHM: Final = "Ed25519"
DOCUMENT_BYTES_MAX: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey

    @property
    def public_b64(self) -> str:
        return public_key_b64(self.private.public_key())


def public_key_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def key_id_of(public_b64: str) -> str:
    return "ed25519:" + hashlib.sha256(base64.b64decode(public_b64)).hexdigest()[:16]


def private_key_b64(private: Ed25519PrivateKey) -> str:
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return base64.b64encode(raw).decode("ascii")


def load_private_key(text: str) -> Ed25519PrivateKey:
    """A private key from a PEM, or a 32-byte seed as base64 or hex."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(f"{ENV_SIGNING_KEY} must be an Ed25519 key", param="signing_key")
        return key
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            seed = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(seed) == 32:
            return Ed25519PrivateKey.from_private_bytes(seed)
    raise InvalidInput(f"{ENV_SIGNING_KEY} must be a PEM key or a 32-byte seed in base64 or hex",
                       param="signing_key")


def key_from_env() -> SigningKey | None:
    text = os.environ.get(ENV_SIGNING_KEY)
    if not text:
        return None
    private = load_private_key(text)
    return SigningKey(key_id_of(public_key_b64(private.public_key())), private)


def generate_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(key_id_of(public_key_b64(private.public_key())), private)


def sign(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    signature = key.private.sign(canonical_json(body))
    return {"statement": body, "signature": {
        "algorithm": ALGORITHM, "key_id": key.key_id, "public_key": key.public_b64,
        "value": base64.b64encode(signature).decode("ascii")}}


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    reason: str
    key_id: str | None = None


def verify_document(document: Any, *, trusted_public_keys: tuple[str, ...] = ()) -> Verification:
    """Check a signed statement offline: the signature, then (when given) that the signing key is
    a trusted one, then that the statement's own figures add up."""
    if not isinstance(document, dict) or not isinstance(document.get("statement"), dict):
        return Verification(False, "not a signed statement (no 'statement' object)")
    signature = document.get("signature")
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM:
        return Verification(False, "no Ed25519 signature")
    try:
        public_raw = base64.b64decode(signature["public_key"], validate=True)
        value = base64.b64decode(signature["value"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(public_raw)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return Verification(False, "the signature block is malformed")
    key_id = key_id_of(signature["public_key"])
    if signature.get("key_id") != key_id:
        return Verification(False, "key_id does not match the public key", key_id)
    try:
        public.verify(value, canonical_json(document["statement"]))
    except InvalidSignature:
        return Verification(False, "signature does not match: the statement was changed", key_id)
    if trusted_public_keys and signature["public_key"] not in trusted_public_keys:
        return Verification(False, "signed by a key that is not the trusted one", key_id)
    from creditgate.billing.statements import check_arithmetic

    problem = check_arithmetic(document["statement"])
    if problem:
        return Verification(False, f"figures do not add up: {problem}", key_id)
    return Verification(True, "signature valid and figures add up", key_id)


def load_document(data: bytes) -> Any:
    if len(data) > DOCUMENT_BYTES_MAX:
        raise InvalidInput(f"statement file is larger than {DOCUMENT_BYTES_MAX} bytes", param="file")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidInput("statement file is not JSON (verify the .json statement)", param="file") from None
