"""The hash chain: each organization's journal is its own chain, so organizations never queue
behind one global chain head."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from creditgate.ledger.records import Entry


def canonical_json(value: Any) -> bytes:
    """One serialization for hashing and storage: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def entry_rows(entries: Iterable[Entry]) -> list[list[Any]]:
    return [[entry.account, entry.grant_id, entry.amount] for entry in entries]


def transaction_hash(*, prev_hash: str, org_id: str, seq: int, kind: str, at_us: int,
                     ref: str | None, idempotency_key: str | None, fingerprint: str | None,
                     result: str, entries: Sequence[Entry]) -> str:
    body = canonical_json({
        "org": org_id, "seq": seq, "kind": kind, "at": at_us, "ref": ref,
        "key": idempotency_key, "fp": fingerprint, "result": result,
        "entries": entry_rows(entries),
    })
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def fingerprint(kind: str, params: dict[str, Any]) -> str:
    """What makes two requests with one idempotency key 'the same': the operation and its inputs."""
    return hashlib.sha256(canonical_json({"kind": kind, "params": params})).hexdigest()
