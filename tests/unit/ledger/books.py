"""Helpers for driving a :class:`Book` in memory: no database, just the ledger rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from creditgate.ledger.book import Book, GrantSpec
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.records import Org
from creditgate.ledger.verify import StoredTransaction, audit_org
from creditgate.storage.ledger_store import entries_text

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SECOND = 1_000_000
DAY = 86_400 * SECOND


def c(text: str) -> int:
    """Credits written the way people write them: ``c("12.5")`` is 12.5 credits in micro-units."""
    return parse_amount(text)


def new_book(*, overdraft: str = "0", org_id: str = "org_test") -> Book:
    return Book(Org(id=org_id, name=org_id, created_at_us=T0, overdraft_limit=c(overdraft)), [], [])


def add_grant(book: Book, amount: str, *, now: int = T0, scope: str = "any", priority: int = 100,
              expires_at: int | None = None, effective_at: int | None = None,
              allow: Iterable[str] | None = None, cost_basis: str = "0", kind: str = "purchase",
              grant_id: str | None = None) -> str:
    spec = GrantSpec(amount=c(amount), kind=kind, scope=scope, priority=priority,
                     effective_at_us=now if effective_at is None else effective_at,
                     expires_at_us=expires_at, cost_basis=c(cost_basis),
                     allow=frozenset(allow) if allow is not None else None)
    return str(book.create_grant(spec, now, grant_id=grant_id)["grant_id"])


def accounts(book: Book) -> dict[str, int]:
    """Every account's balance as the journal says (double entry: they always sum to zero)."""
    totals: dict[str, int] = defaultdict(int)
    for tx in book.transactions:
        for entry in tx.entries:
            totals[entry.account] += entry.amount
    return {account: amount for account, amount in totals.items() if amount}


def stored(book: Book) -> list[StoredTransaction]:
    return [StoredTransaction(org_id=tx.org_id, seq=tx.seq, kind=tx.kind, at_us=tx.at_us, ref=tx.ref,
                              idempotency_key=tx.idempotency_key, fingerprint=tx.fingerprint,
                              result=tx.result, entries=entries_text(tx.entries),
                              prev_hash=tx.prev_hash, hash=tx.hash)
            for tx in book.transactions]


def audit(book: Book) -> list[str]:
    """The verifier's findings for this in-memory book (the same code ``creditgate verify`` runs)."""
    return audit_org(book.org, stored(book), book.grants.values(), book.holds.values())


def remaining(book: Book, grant_id: str) -> int:
    return book.grants[grant_id].remaining


def held(book: Book, grant_id: str) -> int:
    return book.grants[grant_id].held
