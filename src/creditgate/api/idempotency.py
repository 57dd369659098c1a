"""HTTP idempotency for every POST that moves credits (the ``Idempotency-Key`` header).

The first successful answer (status and body) is stored under (caller, key) with a fingerprint
of the method, path and canonical JSON body. The same key with the same request replays it; with
a different request it is a 409. Errors are not stored, so a request refused for lack of credits
may be retried with the same key once credits arrive. The ledger operations below also carry a
key derived from the HTTP key, so two concurrent first attempts still move credits only once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import Response
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from creditgate.api.auth import Principal
from creditgate.api.common import blocking
from creditgate.api.limits import IDEMPOTENCY_KEY_LENGTH_MAX
from creditgate.bootstrap import Services
from creditgate.errors import IdempotencyConflict, InvalidInput
from creditgate.storage.tables_api import api_idempotency

Produce = Callable[[], Awaitable[tuple[int, Any]]]


def check_header(key: str | None) -> str | None:
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable "
                           "characters", param="Idempotency-Key")
    return key


def ledger_key(key: str | None, part: str = "") -> str | None:
    """The ledger idempotency key derived from an HTTP one (namespaced so they never collide)."""
    return None if key is None else f"http:{part}:{key}"


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS) if not isinstance(body, bytes) else body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def _json_response(status: int, body: bytes, replayed: bool) -> Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _load(services: Services, scope: str, key: str) -> Any:
    with services.database.read() as connection:
        return connection.execute(select(api_idempotency).where(
            (api_idempotency.c.scope == scope) & (api_idempotency.c.key == key))).first()


def _store(services: Services, scope: str, key: str, print_: str, status: int, body: bytes) -> None:
    try:
        _insert(services, scope, key, print_, status, body)
    except IntegrityError:
        pass  # a concurrent first attempt stored its answer first; the ledger moved credits once


def _insert(services: Services, scope: str, key: str, print_: str, status: int, body: bytes) -> None:
    with services.database.write() as connection:
        exists = connection.execute(select(api_idempotency.c.key).where(
            (api_idempotency.c.scope == scope) & (api_idempotency.c.key == key))).first()
        if exists is None:
            connection.execute(insert(api_idempotency).values(
                scope=scope, key=key, fingerprint=print_, status=status, body=body.decode(),
                created_at_us=services.clock.now_us()))


async def idempotent(services: Services, principal: Principal, key: str | None, print_: str,
                     produce: Produce) -> Response:
    """Answer ``produce()``, or the stored answer of an earlier request with the same key."""
    key = check_header(key)
    if key is None:
        status, body = await produce()
        return _json_response(status, orjson.dumps(body), False)
    scope = principal.scope_name
    earlier = await blocking(_load, services, scope, key)
    if earlier is not None:
        if earlier.fingerprint != print_:
            raise IdempotencyConflict(f"Idempotency-Key {key!r} was already used with a different "
                                      "request", param="Idempotency-Key")
        return _json_response(earlier.status, earlier.body.encode(), True)
    status, body = await produce()
    data = orjson.dumps(body)
    await blocking(_store, services, scope, key, print_, status, data)
    return _json_response(status, data, False)
