"""Upstream credentials: referenced from the environment, or stored encrypted with Fernet.

The key comes from ``CREDITGATE_SECRET_KEY``: either a Fernet key, or any passphrase (it is then
stretched with SHA-256 into one). Without it, storing a credential is refused rather than
stored in clear.
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

from creditgate.errors import InvalidInput, UpstreamError

SECRET_KEY_ENV: Final = "CREDITGATE_SECRET_KEY"


def _fernet() -> Fernet | None:
    secret = os.environ.get(SECRET_KEY_ENV, "")
    return _fernet_for(secret) if secret else None


@lru_cache(maxsize=8)
def _fernet_for(secret: str) -> Fernet:
    try:
        return Fernet(secret.encode())
    except ValueError:
        digest = hashlib.sha256(secret.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(plain: str) -> str:
    fernet = _fernet()
    if fernet is None:
        raise InvalidInput(f"storing an upstream api_key needs {SECRET_KEY_ENV} to be set; "
                           "or reference an environment variable with api_key_env", param="api_key")
    return fernet.encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    secret = os.environ.get(SECRET_KEY_ENV, "")
    if not secret:
        raise UpstreamError(f"the deployment's stored credential needs {SECRET_KEY_ENV}")
    return _decrypt(token, secret)


@lru_cache(maxsize=1024)
def _decrypt(token: str, secret: str) -> str:
    """Every forwarded request needs its deployment's credential: decrypt each one once per key
    (keyed by the key too, so a changed CREDITGATE_SECRET_KEY is honoured)."""
    try:
        return _fernet_for(secret).decrypt(token.encode()).decode()
    except InvalidToken:
        raise UpstreamError(f"the deployment's stored credential does not match {SECRET_KEY_ENV}") from None


def resolve(api_key_env: str | None, api_key_encrypted: str | None) -> str | None:
    """The upstream credential of a deployment, or None when it needs none."""
    if api_key_encrypted:
        return decrypt(api_key_encrypted)
    if api_key_env:
        value = os.environ.get(api_key_env)
        if not value:
            raise UpstreamError(f"the deployment's credential variable {api_key_env} is not set")
        return value
    return None
