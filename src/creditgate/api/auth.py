"""Who is calling: ``authenticate`` turns an ``Authorization: Bearer`` header into a Principal.

The gateway calls :func:`authenticate` on every request, so key lookups are cached in process for
at most ``KEY_CACHE_TTL_S``: a revocation takes effect at once in the process that made it and
within that bound everywhere else. Expiry is checked against the injected clock on every call.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Final, cast

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from creditgate.api import keystore
from creditgate.api.limits import KEY_CACHE_ENTRIES_MAX, KEY_CACHE_TTL_S, RateLimiter
from creditgate.bootstrap import Services
from creditgate.errors import Forbidden, RateLimited, Unauthorized
from creditgate.ledger.budgets import subjects_of

ADMIN_KEY_ENV: Final = "CREDITGATE_ADMIN_KEY"
ADMIN_ENV_KEY_LENGTH_MIN: Final = 16
_CACHE_EXTRA: Final = "api.key_cache"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "admin" or "org"
    org_id: str | None
    key_id: str
    project_id: str | None
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin"

    @property
    def scope_name(self) -> str:
        """The namespace of this caller's idempotency keys."""
        return "admin" if self.org_id is None else self.org_id

    @property
    def budget_subjects(self) -> tuple[str, ...]:
        """The budgets this caller's spending counts against (ledger.budgets.subjects_of). An
        admin acts for no key of the organization, so no budget of it applies."""
        return () if self.is_admin else subjects_of(self.key_id, self.project_id)


class _KeyCache:
    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, keystore.ApiKey | None]] = {}
        self.lock = threading.Lock()


def _cache(services: Services) -> _KeyCache:
    cache = services.extras.get(_CACHE_EXTRA)
    if cache is None:
        cache = services.extras.setdefault(_CACHE_EXTRA, _KeyCache())
    return cast(_KeyCache, cache)


def forget_key(services: Services, prefix: str) -> None:
    cache = _cache(services)
    with cache.lock:
        cache.entries.pop(prefix, None)


def _lookup(services: Services, prefix: str) -> keystore.ApiKey | None:
    cache = _cache(services)
    now = time.monotonic()
    entry = cache.entries.get(prefix)
    if entry is not None and now - entry[0] <= KEY_CACHE_TTL_S:
        return entry[1]
    key = keystore.find_by_prefix(services, prefix)
    with cache.lock:
        if len(cache.entries) >= KEY_CACHE_ENTRIES_MAX:
            cache.entries.clear()
        cache.entries[prefix] = (now, key)
    return key


def authenticate(services: Services, authorization_header: str | None) -> Principal:
    """The caller behind ``Authorization: Bearer <key>``; raises Unauthorized otherwise."""
    if not authorization_header:
        raise Unauthorized("missing API key: send the header Authorization: Bearer <key>")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("malformed Authorization header: expected Bearer <key>")
    presented = hashlib.sha256(token.encode()).hexdigest()
    env_key = os.environ.get(ADMIN_KEY_ENV, "")
    if len(env_key) >= ADMIN_ENV_KEY_LENGTH_MIN and hmac.compare_digest(
            presented, hashlib.sha256(env_key.encode()).hexdigest()):
        return Principal("admin", None, "env", None, frozenset(keystore.KEY_SCOPES))
    prefix = keystore.split_key(token)
    key = _lookup(services, prefix) if prefix is not None else None
    if key is None or not hmac.compare_digest(presented, key.secret_hash):
        raise Unauthorized("invalid API key")
    if key.revoked_at_us is not None:
        raise Unauthorized("this API key was revoked", code_detail="key_revoked")
    if key.expires_at_us is not None and key.expires_at_us <= services.clock.now_us():
        raise Unauthorized("this API key has expired", code_detail="key_expired")
    return Principal(key.kind, key.org_id, key.id, key.project_id, key.scopes)


# ----------------------------------------------------------------------------- authorization
def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden("this needs an admin key")


def require_org(principal: Principal, org_id: str, scope: str) -> None:
    """Admins may act on any organization; an org key only on its own, with ``scope``."""
    if principal.is_admin:
        return
    if principal.org_id != org_id:
        raise Forbidden("this key belongs to another organization", param="org_id")
    if scope not in principal.scopes:
        raise Forbidden(f"this key lacks the {scope!r} scope", param="scope")


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.is_admin and scope not in principal.scopes:
        raise Forbidden(f"this key lacks the {scope!r} scope", param="scope")


# ----------------------------------------------------------------------------- FastAPI wiring
_bearer = HTTPBearer(auto_error=False, description="An admin key or an organization key")


def current_principal(request: Request,
                      _credentials: Annotated[HTTPAuthorizationCredentials | None,
                                              Depends(_bearer)]) -> Principal:
    services: Services = request.app.state.services
    principal = authenticate(services, request.headers.get("authorization"))
    limiter: RateLimiter = request.app.state.rate_limiter  # or the Redis one: same take()
    wait_s = limiter.take(principal.key_id)
    if wait_s > 0:
        raise RateLimited("too many requests for this key", retry_after_s=max(1, int(wait_s + 0.999)))
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
