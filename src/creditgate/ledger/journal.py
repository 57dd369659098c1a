"""The hash chain: each organization's journal is its own chain, so organizations never queue
behind one global chain head."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from creditgate.ledger.records import Entry, Grant


def canonical_json(value: Any) -> bytes:
    """One serialization for hashing and storage: sorted keys, no whitespace, UTF-8."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def entry_rows(entries: Iterable[Entry]) -> list[list[Any]]:
    return [[entry.account, entry.grant_id, entry.amount] for entry in entries]


def entries_json(entries: Iterable[Entry]) -> bytes:
    """The legs exactly as the journal row stores them and the hash covers them."""
    return orjson.dumps(entry_rows(entries))


def transaction_hash(*, prev_hash: str, org_id: str, seq: int, kind: str, at_us: int,
                     ref: str | None, idempotency_key: str | None, fingerprint: str | None,
                     result: str, entries: Sequence[Entry] | None = None,
                     entries_text: bytes | None = None) -> str:
    """The chain hash of one transaction. Give the legs as ``entries`` or, when the caller has
    already serialized them with :func:`entries_json` (the writer stores that text too),
    as ``entries_text``: it is embedded verbatim, so both give the same bytes and the same hash."""
    if entries_text is None:
        assert entries is not None
        entries_text = entries_json(entries)
    body = canonical_json({
        "org": org_id, "seq": seq, "kind": kind, "at": at_us, "ref": ref,
        "key": idempotency_key, "fp": fingerprint, "result": result,
        "entries": orjson.Fragment(entries_text),
    })
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def fingerprint(kind: str, params: dict[str, Any]) -> str:
    """What makes two requests with one idempotency key 'the same': the operation and its inputs."""
    return hashlib.sha256(canonical_json({"kind": kind, "params": params})).hexdigest()


def grant_terms(grant: Grant) -> dict[str, Any]:
    """The terms a grant was issued with, recorded in its journal entry so that the verifier can
    tell when a grant row's expiry, scope, priority, allow-list or cost basis was edited."""
    return {"kind": grant.kind, "scope": grant.scope, "priority": grant.priority,
            "effective_at_us": grant.effective_at_us, "expires_at_us": grant.expires_at_us,
            "cost_basis": grant.cost_basis, "currency": grant.currency,
            "allow": sorted(grant.allow) if grant.allow is not None else None,
            "source_grant_id": grant.source_grant_id}
