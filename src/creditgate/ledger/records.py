"""Immutable ledger records, as NamedTuples (like Beancount's directives).

A change is a new record made with ``record._replace(...)``; NamedTuple's replace is several times
cheaper than ``dataclasses.replace`` on a frozen dataclass. The few changes every reservation and
posting makes (a grant's amounts, a hold's resolution, the chain head) have positional copies of
their own, twice as cheap again as ``_replace`` on these wide records.
"""

from __future__ import annotations

from typing import Final, Literal, NamedTuple

GrantKind = Literal["purchase", "trial", "promotional", "rollover", "adjustment", "recurring"]
Scope = Literal["inference", "training", "any"]
UsageScope = Literal["inference", "training"]
GrantStatus = Literal["active", "voided", "expired"]
HoldStatus = Literal["pending", "posted", "voided", "expired"]

GRANT_KINDS: Final = ("purchase", "trial", "promotional", "rollover", "adjustment", "recurring")
GRANT_SCOPES: Final = ("inference", "training", "any")
USAGE_SCOPES: Final = ("inference", "training")

# Accounts of the double-entry journal. Per-grant and per-hold accounts carry the id.
ACCOUNT_ISSUED: Final = "issued"
ACCOUNT_USAGE: Final = "usage"
ACCOUNT_BREAKAGE: Final = "breakage"
ACCOUNT_FORFEIT: Final = "forfeit"
GENESIS_HASH: Final = "0" * 64


def grant_account(grant_id: str) -> str:
    return f"grant:{grant_id}"


def hold_account(hold_id: str) -> str:
    return f"hold:{hold_id}"


def overdraft_account(scope: str) -> str:
    return f"overdraft:{scope}"


class Org(NamedTuple):
    id: str
    name: str
    created_at_us: int
    overdraft_limit: int = 0
    debt_inference: int = 0
    debt_training: int = 0
    chain_seq: int = 0
    chain_head: str = GENESIS_HASH

    def debt(self, scope: str) -> int:
        return self.debt_training if scope == "training" else self.debt_inference

    def with_chain(self, seq: int, head: str) -> Org:
        """This organization with a new chain head (fields 6 and 7), once per journal entry."""
        return Org._make(self[:6] + (seq, head))

    @property
    def debt_total(self) -> int:
        return self.debt_inference + self.debt_training


class Grant(NamedTuple):
    id: str
    org_id: str
    kind: str
    scope: str
    priority: int
    effective_at_us: int
    expires_at_us: int | None
    amount: int
    remaining: int
    held: int
    created_at_us: int
    cost_basis: int = 0
    currency: str = "USD"
    status: str = "active"
    allow: frozenset[str] | None = None
    source_grant_id: str | None = None
    rollover: str | None = None
    metadata: str = "{}"

    def with_amounts(self, remaining: int, held: int) -> Grant:
        """This grant with new ``remaining`` and ``held`` (fields 8 and 9)."""
        return Grant._make(self[:8] + (remaining, held) + self[10:])

    @property
    def free(self) -> int:
        """Credits neither consumed nor earmarked by a pending hold."""
        return self.remaining - self.held

    def is_live(self, now_us: int) -> bool:
        return (self.status == "active" and self.effective_at_us <= now_us
                and (self.expires_at_us is None or now_us < self.expires_at_us))

    def covers(self, scope: str, subjects: tuple[str, ...]) -> bool:
        """Whether this grant may pay for usage of ``scope`` touching ``subjects`` (model, meters)."""
        if self.scope != "any" and self.scope != scope:
            return False
        if self.allow is None:
            return True
        return bool(subjects) and all(subject in self.allow for subject in subjects)

    def burn_order_key(self) -> tuple[int, int, int, int, str]:
        """Documented burn-down order: priority, expiry (never-expiring last), creation, id."""
        never = 1 if self.expires_at_us is None else 0
        return (self.priority, never, self.expires_at_us or 0, self.created_at_us, self.id)


class Budget(NamedTuple):
    """A sub-budget of an organization's credits for one project or key, per period.

    ``spent`` counts what was charged against it in the period that starts at
    ``period_start_us``; ``held`` what pending holds have earmarked. A hard budget refuses a
    reservation or debit that would take spent + held past ``cap``; a soft one only alerts.
    """

    id: str
    org_id: str
    subject: str  # "project:<id>" or "key:<id>"
    cap: int
    mode: str  # hard | soft
    period: str  # day | month (UTC)
    spent: int
    held: int
    period_start_us: int
    created_at_us: int


class Hold(NamedTuple):
    id: str
    org_id: str
    amount: int
    scope: str
    status: str
    created_at_us: int
    expires_at_us: int
    legs: tuple[tuple[str, int], ...]
    model: str | None = None
    posted: int = 0
    resolved_at_us: int | None = None
    metadata: str = "{}"
    budgets: tuple[str, ...] = ()

    def resolved(self, status: str, posted: int, resolved_at_us: int) -> Hold:
        """This hold posted, voided or expired (fields 4, 9 and 10)."""
        return Hold._make(self[:4] + (status,) + self[5:9] + (posted, resolved_at_us) + self[11:])


class Entry(NamedTuple):
    account: str
    amount: int
    grant_id: str | None = None


class JournalTransaction(NamedTuple):
    org_id: str
    seq: int
    kind: str
    at_us: int
    ref: str | None
    idempotency_key: str | None
    fingerprint: str | None
    result: str
    prev_hash: str
    hash: str
    entries: tuple[Entry, ...] = ()
    # The entries as serialized once for the hash, stored as is in the journal row.
    entries_text: str = "[]"
