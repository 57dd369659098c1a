"""Dashboard sessions: a signed, HttpOnly cookie naming the key that signed in (never the key).

The cookie is ``<base64url JSON>.<base64url HMAC-SHA256>`` with a server secret kept in
``tracking_settings`` (made once, shared by every process of the deployment). Every request
re-reads the key behind the session, so revoking or expiring the key ends its sessions too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import select

from creditgate.errors import Forbidden, Unauthorized
from creditgate.storage.tables_tracking import tracking_settings
from creditgate.tracking.events import insert_ignoring_duplicates

COOKIE_NAME: Final = "cg_session"
SESSION_TTL_S: Final = 8 * 3600
SECRET_SETTING: Final = "dashboard.session_secret"
COOKIE_BYTES_MAX: Final = 1024
US: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str
    org_id: str | None  # None: an admin
    expires_at_us: int

    @property
    def is_admin(self) -> bool:
        return self.org_id is None

    def may_see(self, org_id: str) -> bool:
        return self.is_admin or self.org_id == org_id


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, services: Any) -> None:
        self.services = services
        self._secret: bytes | None = None

    def secret(self) -> bytes:
        if self._secret is None:
            database = self.services.database
            with database.write() as connection:
                insert_ignoring_duplicates(connection, tracking_settings, {
                    "name": SECRET_SETTING, "value": secrets.token_urlsafe(32)})
                value = connection.execute(select(tracking_settings.c.value).where(
                    tracking_settings.c.name == SECRET_SETTING)).scalar_one()
            self._secret = value.encode()
        return self._secret

    def sign_in(self, presented_key: str) -> tuple[Session, str]:
        """Check a key (org key with ``read``, or an admin key); the session and its cookie value."""
        from creditgate.api.auth import authenticate

        principal = authenticate(self.services, f"Bearer {presented_key.strip()}")
        if not principal.is_admin and "read" not in principal.scopes:
            raise Forbidden("this key lacks the 'read' scope the dashboard needs", param="key")
        session = Session(principal.key_id, principal.org_id,
                          self.services.clock.now_us() + SESSION_TTL_S * US)
        payload = _b64(orjson.dumps({"k": session.key_id, "o": session.org_id, "x": session.expires_at_us}))
        return session, f"{payload}.{self._mac(payload)}"

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret(), payload.encode(), hashlib.sha256).digest())

    def read(self, cookie: str | None) -> Session:
        """The session behind a cookie, after checking its key again; Unauthorized otherwise."""
        if not cookie or len(cookie) > COOKIE_BYTES_MAX or "." not in cookie:
            raise Unauthorized("sign in first")
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise Unauthorized("the session is not valid; sign in again")
        try:
            data = orjson.loads(_unb64(payload))
            session = Session(str(data["k"]), data["o"], int(data["x"]))
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("the session is not valid; sign in again") from None
        if session.expires_at_us <= self.services.clock.now_us():
            raise Unauthorized("the session expired; sign in again")
        self._check_key(session)
        return session

    def _check_key(self, session: Session) -> None:
        from creditgate.api import keystore
        from creditgate.api.auth import ADMIN_ENV_KEY_LENGTH_MIN, ADMIN_KEY_ENV
        from creditgate.errors import NotFound

        if session.key_id == "env":
            if len(os.environ.get(ADMIN_KEY_ENV, "")) < ADMIN_ENV_KEY_LENGTH_MIN:
                raise Unauthorized("the admin key is no longer configured; sign in again")
            return
        try:
            key = keystore.get_key(self.services, session.org_id, session.key_id)  # type: ignore[arg-type]
        except NotFound:
            raise Unauthorized("the key of this session no longer exists") from None
        now = self.services.clock.now_us()
        if key.revoked_at_us is not None or (key.expires_at_us is not None and key.expires_at_us <= now):
            raise Unauthorized("the key of this session was revoked or expired; sign in again")
        if key.kind == "org" and "read" not in key.scopes:
            raise Unauthorized("the key of this session lacks the 'read' scope")
