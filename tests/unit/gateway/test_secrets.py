"""Stored upstream credentials: decrypted once per key, never served under another key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from creditgate.errors import UpstreamError
from creditgate.gateway import secrets


def test_a_stored_credential_decrypts_to_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.SECRET_KEY_ENV, "a passphrase, stretched into a Fernet key")
    token = secrets.encrypt("sk-upstream")
    assert token != "sk-upstream"
    assert secrets.resolve(None, token) == "sk-upstream"
    assert secrets.resolve(None, token) == "sk-upstream"  # the second time from the cache


def test_a_changed_key_is_honoured_although_the_plain_text_was_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(secrets.SECRET_KEY_ENV, Fernet.generate_key().decode())
    token = secrets.encrypt("sk-upstream")
    assert secrets.decrypt(token) == "sk-upstream"
    monkeypatch.setenv(secrets.SECRET_KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(UpstreamError, match="does not match"):
        secrets.decrypt(token)
    monkeypatch.delenv(secrets.SECRET_KEY_ENV)
    with pytest.raises(UpstreamError, match="needs CREDITGATE_SECRET_KEY"):
        secrets.decrypt(token)
