"""Ledger write operations as values, so that a group-commit writer can batch them.

Each operation names the organization it touches, the records it needs loaded, its inputs for
the idempotency fingerprint, and how it changes a :class:`Book`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from creditgate.ledger.book import Book, GrantSpec


@dataclass(frozen=True, slots=True)
class Operation:
    kind: ClassVar[str] = ""
    org_id: str
    idempotency_key: str | None

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def hold_ids(self) -> tuple[str, ...]:
        return ()

    def grant_ids(self) -> tuple[str, ...]:
        return ()

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def rider(self, result: dict[str, Any]) -> Any:
        """A row to store in the same transaction when the operation succeeds (see
        ``GroupCommitWriter.add_side_writer``); None for most operations."""
        return None


@dataclass(frozen=True, slots=True)
class CreateGrant(Operation):
    kind: ClassVar[str] = "grant"
    spec: GrantSpec = field(default=None)  # type: ignore[assignment]
    # False when the caller gave no effective_at and the grant starts "now": a retry comes later,
    # so the defaulted instant must not be part of the idempotency fingerprint.
    effective_at_given: bool = True

    def params(self) -> dict[str, Any]:
        spec = self.spec
        return {"amount": spec.amount, "kind": spec.kind, "scope": spec.scope,
                "priority": spec.priority,
                "effective_at_us": spec.effective_at_us if self.effective_at_given else None,
                "expires_at_us": spec.expires_at_us, "cost_basis": spec.cost_basis,
                "currency": spec.currency,
                "allow": sorted(spec.allow) if spec.allow is not None else None,
                "source_grant_id": spec.source_grant_id, "rollover": spec.rollover,
                "metadata": spec.metadata}

    def grant_ids(self) -> tuple[str, ...]:
        return (self.spec.source_grant_id,) if self.spec.source_grant_id else ()

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.create_grant(self.spec, now_us, key=self.idempotency_key, fingerprint=fingerprint)


@dataclass(frozen=True, slots=True)
class VoidGrant(Operation):
    kind: ClassVar[str] = "grant_void"
    grant_id: str = ""

    def params(self) -> dict[str, Any]:
        return {"grant_id": self.grant_id}

    def grant_ids(self) -> tuple[str, ...]:
        return (self.grant_id,)

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.void_grant(self.grant_id, now_us, key=self.idempotency_key, fingerprint=fingerprint)


@dataclass(frozen=True, slots=True)
class Reserve(Operation):
    kind: ClassVar[str] = "hold_reserve"
    amount: int = 0
    scope: str = "inference"
    ttl_us: int = 0
    subjects: tuple[str, ...] = ()
    model: str | None = None
    metadata: str = "{}"
    budget_subjects: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        return {"amount": self.amount, "scope": self.scope, "ttl_us": self.ttl_us,
                "subjects": list(self.subjects), "model": self.model, "metadata": self.metadata,
                "budgets": list(self.budget_subjects)}

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.reserve(self.amount, self.scope, self.ttl_us, now_us, subjects=self.subjects,
                            model=self.model, metadata=self.metadata, key=self.idempotency_key,
                            fingerprint=fingerprint, budget_subjects=self.budget_subjects)


@dataclass(frozen=True, slots=True)
class Post(Operation):
    kind: ClassVar[str] = "hold_post"
    hold_id: str = ""
    actual: int = 0

    def params(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id, "actual": self.actual}

    def hold_ids(self) -> tuple[str, ...]:
        return (self.hold_id,)

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.post(self.hold_id, self.actual, now_us, key=self.idempotency_key,
                         fingerprint=fingerprint)


@dataclass(frozen=True, slots=True)
class Void(Operation):
    kind: ClassVar[str] = "hold_void"
    hold_id: str = ""

    def params(self) -> dict[str, Any]:
        return {"hold_id": self.hold_id}

    def hold_ids(self) -> tuple[str, ...]:
        return (self.hold_id,)

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.void(self.hold_id, now_us, key=self.idempotency_key, fingerprint=fingerprint)


@dataclass(frozen=True, slots=True)
class Debit(Operation):
    kind: ClassVar[str] = "debit"
    amount: int = 0
    scope: str = "inference"
    subjects: tuple[str, ...] = ()
    ref: str | None = None
    budget_subjects: tuple[str, ...] = ()
    budgets_refuse: bool = True  # see Book.debit

    def params(self) -> dict[str, Any]:
        params = {"amount": self.amount, "scope": self.scope, "subjects": list(self.subjects),
                  "ref": self.ref, "budgets": list(self.budget_subjects)}
        if not self.budgets_refuse:  # (only then: earlier debits' fingerprints stay as they were)
            params["budgets_refuse"] = False
        return params

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.debit(self.amount, self.scope, now_us, subjects=self.subjects, ref=self.ref,
                          key=self.idempotency_key, fingerprint=fingerprint,
                          budget_subjects=self.budget_subjects, budgets_refuse=self.budgets_refuse)


@dataclass(frozen=True, slots=True)
class ExpireDue(Operation):
    """Expire what is due in one organization. Not idempotency-keyed: it is naturally idempotent."""

    kind: ClassVar[str] = "expire_due"

    def params(self) -> dict[str, Any]:
        return {}

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        # The batch books holds past their ttl before any operation runs (apply_batch), so by now
        # they are already expired; count those booked in this batch too, or the caller hears 0.
        # (Two ExpireDue operations for one organization in one batch would both count them.)
        booked = sum(1 for tx in book.transactions if tx.kind == "hold_expire" and tx.at_us == now_us)
        return {"expired": booked + book.expire_due(now_us)}


@dataclass(frozen=True, slots=True)
class SetBudget(Operation):
    kind: ClassVar[str] = "budget_set"
    subject: str = ""
    cap: int = 0
    mode: str = "hard"
    period: str = "month"

    def params(self) -> dict[str, Any]:
        return {"subject": self.subject, "cap": self.cap, "mode": self.mode, "period": self.period}

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        return book.set_budget(self.subject, self.cap, self.mode, self.period, now_us,
                               key=self.idempotency_key, fingerprint=fingerprint)
