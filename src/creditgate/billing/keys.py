"""Where the statement signing key comes from: the environment, or one key kept in the database."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from creditgate.billing.signing import SigningKey, generate_key, key_from_env, private_key_b64
from creditgate.storage.database import Database
from creditgate.storage.tables_billing import billing_signing_keys

GENERATED_SLOT = "generated"


def signing_key(database: Database, now_us: int) -> SigningKey:
    """The key new statements are signed with. An environment key is remembered (public part
    only) so that its statements can still be checked after the key is rotated."""
    env_key = key_from_env()
    if env_key is not None:
        _remember_public(database, env_key, now_us)
        return env_key
    with database.read() as connection:
        row = connection.execute(select(billing_signing_keys).where(
            billing_signing_keys.c.slot == GENERATED_SLOT)).first()
    if row is not None:
        return _from_row(row)
    fresh = generate_key()
    try:
        with database.write() as connection:
            connection.execute(insert(billing_signing_keys).values(
                key_id=fresh.key_id, slot=GENERATED_SLOT, public_key=fresh.public_b64,
                private_key=private_key_b64(fresh.private), created_at_us=now_us))
        return fresh
    except IntegrityError:  # another process generated one first: use theirs
        with database.read() as connection:
            row = connection.execute(select(billing_signing_keys).where(
                billing_signing_keys.c.slot == GENERATED_SLOT)).one()
        return _from_row(row)


def _from_row(row: Any) -> SigningKey:
    private = Ed25519PrivateKey.from_private_bytes(base64.b64decode(row.private_key))
    return SigningKey(row.key_id, private)


def _remember_public(database: Database, key: SigningKey, now_us: int) -> None:
    with database.read() as connection:
        known = connection.execute(select(billing_signing_keys.c.key_id).where(
            billing_signing_keys.c.key_id == key.key_id)).first()
    if known:
        return
    try:
        with database.write() as connection:
            connection.execute(insert(billing_signing_keys).values(
                key_id=key.key_id, slot=None, public_key=key.public_b64, private_key=None,
                created_at_us=now_us))
    except IntegrityError:
        pass


def public_keys(database: Database) -> list[dict[str, str]]:
    """Every public key that signed or signs statements here (what the API serves)."""
    with database.read() as connection:
        rows = connection.execute(select(billing_signing_keys.c.key_id, billing_signing_keys.c.public_key,
                                         billing_signing_keys.c.slot)
                                  .order_by(billing_signing_keys.c.created_at_us)).all()
    found = [{"key_id": row.key_id, "algorithm": "Ed25519", "public_key": row.public_key,
              "source": "database" if row.slot else "environment"} for row in rows]
    env_key = key_from_env()
    if env_key is not None and all(item["key_id"] != env_key.key_id for item in found):
        found.append({"key_id": env_key.key_id, "algorithm": "Ed25519",
                      "public_key": env_key.public_b64, "source": "environment"})
    return found
