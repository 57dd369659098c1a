"""API keys: creating, finding, listing and revoking them. Only hashes are stored.

A key reads ``cg_<prefix>_<secret>``. The prefix (12 hex digits) is stored in clear to find the
row; the whole key is stored only as its SHA-256 and compared with ``hmac.compare_digest``.
SHA-256 without a slow KDF is enough here because the secret is 256 random bits, not a password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import insert, select, update

from creditgate.bootstrap import Services
from creditgate.clock import iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.service import check_name
from creditgate.storage.schema import projects
from creditgate.storage.tables_api import api_keys

KEY_SCOPES: Final = ("inference", "read", "manage")
KEY_PREFIX_HEX: Final = 12
KEY_SECRET_BYTES: Final = 32
KEYS_PER_ORG_MAX: Final = 1_000


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    prefix: str
    secret_hash: str
    kind: str
    org_id: str | None
    project_id: str | None
    name: str
    scopes: frozenset[str]
    created_at_us: int
    expires_at_us: int | None
    revoked_at_us: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "org_id": self.org_id,
                "project_id": self.project_id, "prefix": f"cg_{self.prefix}",
                "scopes": sorted(self.scopes), "created_at": iso(self.created_at_us),
                "expires_at": iso(self.expires_at_us), "revoked_at": iso(self.revoked_at_us)}


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != "cg" or len(parts[1]) != KEY_PREFIX_HEX:
        return None
    return parts[1]


def check_scopes(scopes: Any) -> frozenset[str]:
    if not isinstance(scopes, (list, tuple, set, frozenset)) or not scopes:
        raise InvalidInput(f"scopes must be a non-empty list of {', '.join(KEY_SCOPES)}", param="scopes")
    for scope in scopes:
        if scope not in KEY_SCOPES:
            raise InvalidInput(f"unknown scope {scope!r}: use {', '.join(KEY_SCOPES)}", param="scopes")
    return frozenset(scopes)


def create_key(services: Services, *, kind: str, name: str, org_id: str | None = None,
               scopes: Any = KEY_SCOPES, project_id: str | None = None,
               expires_at_us: int | None = None) -> tuple[ApiKey, str]:
    """Create a key; answer its record and the secret, which is never available again."""
    assert kind in ("admin", "org")
    name = check_name(name)
    scope_set = check_scopes(scopes) if kind == "org" else frozenset(KEY_SCOPES)
    now = services.clock.now_us()
    if expires_at_us is not None and expires_at_us <= now:
        raise InvalidInput("expires_at must be in the future", param="expires_at")
    prefix = secrets.token_hex(KEY_PREFIX_HEX // 2)
    secret = f"cg_{prefix}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
    key = ApiKey(id=new_id("key"), prefix=prefix, secret_hash=hash_key(secret), kind=kind,
                 org_id=org_id, project_id=project_id, name=name, scopes=scope_set,
                 created_at_us=now, expires_at_us=expires_at_us, revoked_at_us=None)
    with services.database.write() as connection:
        if org_id is not None:
            services.ledger.get_org(org_id, connection=connection)
            count = len(connection.execute(select(api_keys.c.id).where(
                api_keys.c.org_id == org_id).limit(KEYS_PER_ORG_MAX)).all())
            if count >= KEYS_PER_ORG_MAX:
                raise InvalidInput(f"an organization has at most {KEYS_PER_ORG_MAX} keys", param="name")
        if project_id is not None:
            found = connection.execute(select(projects.c.id).where(
                (projects.c.id == project_id) & (projects.c.org_id == org_id))).first()
            if found is None:
                raise NotFound(f"project {project_id} not found", param="project_id")
        connection.execute(insert(api_keys).values(
            id=key.id, prefix=prefix, secret_hash=key.secret_hash, kind=kind, org_id=org_id,
            project_id=project_id, name=name, scopes=",".join(sorted(scope_set)),
            created_at_us=now, expires_at_us=expires_at_us))
    return key, secret


def find_by_prefix(services: Services, prefix: str) -> ApiKey | None:
    with services.database.read() as connection:
        row = connection.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
    return _from_row(row) if row is not None else None


def list_keys(services: Services, org_id: str) -> list[ApiKey]:
    with services.database.read() as connection:
        services.ledger.get_org(org_id, connection=connection)
        rows = connection.execute(select(api_keys).where(api_keys.c.org_id == org_id)
                                  .order_by(api_keys.c.created_at_us, api_keys.c.id)).all()
    return [_from_row(row) for row in rows]


def get_key(services: Services, org_id: str, key_id: str) -> ApiKey:
    with services.database.read() as connection:
        row = connection.execute(select(api_keys).where(
            (api_keys.c.id == key_id) & (api_keys.c.org_id == org_id))).first()
    if row is None:
        raise NotFound(f"key {key_id} not found", param="key_id")
    return _from_row(row)


def revoke_key(services: Services, org_id: str, key_id: str) -> ApiKey:
    key = get_key(services, org_id, key_id)
    if key.revoked_at_us is None:
        with services.database.write() as connection:
            connection.execute(update(api_keys).where(
                (api_keys.c.id == key_id) & api_keys.c.revoked_at_us.is_(None))
                .values(revoked_at_us=services.clock.now_us()))
    from creditgate.api.auth import forget_key  # the cache must not outlive a revocation

    forget_key(services, key.prefix)
    return get_key(services, org_id, key_id)


def _from_row(row: Any) -> ApiKey:
    return ApiKey(id=row.id, prefix=row.prefix, secret_hash=row.secret_hash, kind=row.kind,
                  org_id=row.org_id, project_id=row.project_id, name=row.name,
                  scopes=frozenset(row.scopes.split(",")) if row.scopes else frozenset(),
                  created_at_us=row.created_at_us, expires_at_us=row.expires_at_us,
                  revoked_at_us=row.revoked_at_us)
