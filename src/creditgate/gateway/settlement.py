"""The gateway's two ledger writes per request: reserve a hold, then settle it.

When the upstream has answered before the hold is committed (a fast upstream at a low rate), the
two go as one operation, :class:`ReserveAndSettle`: the same hold and the same two journal
transactions, in one database transaction instead of two.

Both are ledger operations run by the group-commit writer (many requests per database
transaction). They extend the ledger's own ``Reserve`` and ``Post`` so that each answer also
carries the organization's available balance right after the write: the gateway reports it in
``x-creditgate-balance`` without another query.

Settling when the upstream reports more than was held (it should not: the hold is a true upper
bound, see :mod:`creditgate.gateway.estimate`, but an upstream can ignore ``max_tokens`` or count
differently): the whole hold is posted, and the excess is debited in the same operation, from any
free grants first and then as overage against the organization's overdraft allowance. What the
allowance cannot cover is reported as ``uncollected`` (and recorded in the usage record); the
request is never charged less than the hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from creditgate.errors import InsufficientCredits
from creditgate.ledger.book import Book
from creditgate.ledger.operations import Operation, Post, Reserve, Void


class _CarriesUsage:
    """An operation whose ``usage`` (result -> the request's usage record) is stored in the same
    transaction as the operation itself (see ``GroupCommitWriter.add_side_writer``)."""

    __slots__ = ()
    usage: Any

    def rider(self, result: dict[str, Any]) -> Any:
        return self.usage(result) if self.usage is not None else None


def balances(book: Book, scope: str, subjects: tuple[str, ...], budget_subjects: tuple[str, ...],
             now_us: int) -> dict[str, int]:
    """The organization's available credits (``x-creditgate-balance``) and what the request's
    key may still spend (``spendable``: no more than its hard budgets leave), for the gateway to
    decide whether the key's next request may go upstream before its hold."""
    available = book.available(scope, subjects, now_us)
    room = book.budget_room(budget_subjects, now_us)
    return {"available": available, "spendable": available if room is None else min(available, room)}


@dataclass(frozen=True, slots=True)
class ReserveForRequest(Reserve):
    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        result = Reserve.apply(self, book, now_us, fingerprint)
        return {**result, **balances(book, self.scope, self.subjects, self.budget_subjects, now_us)}


@dataclass(frozen=True, slots=True)
class SettleRequest(_CarriesUsage, Post):
    """Post ``min(cost, held)``; debit any excess in the same write (see the module docstring)."""

    cost: int = 0
    held: int = 0
    scope: str = "inference"
    subjects: tuple[str, ...] = ()
    usage: Any = None  # builds the request's usage record from the result, stored atomically
    budget_subjects: tuple[str, ...] = ()  # the excess counts against these budgets too

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        result = Post.apply(self, book, now_us, fingerprint)
        excess = self.cost - self.actual
        overage = uncollected = 0
        if excess > 0:
            try:
                debit = book.debit(excess, self.scope, now_us, subjects=self.subjects,
                                   ref=self.hold_id, budget_subjects=self.budget_subjects,
                                   budgets_refuse=False)
                overage = excess
                result["debit_overage"] = debit["overage"]
            except InsufficientCredits:
                # Book.debit checks before it changes anything, so the post above still stands.
                uncollected = excess
        return {**result, "excess_debited": overage, "uncollected": uncollected,
                **balances(book, self.scope, self.subjects, self.budget_subjects, now_us)}


@dataclass(frozen=True, slots=True)
class VoidRequest(_CarriesUsage, Void):
    scope: str = "inference"
    subjects: tuple[str, ...] = ()
    usage: Any = None
    budget_subjects: tuple[str, ...] = ()

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        result = Void.apply(self, book, now_us, fingerprint)
        return {**result, **balances(book, self.scope, self.subjects, self.budget_subjects, now_us)}


def settle_operation(org_id: str, hold_id: str, *, cost: int, held: int, scope: str,
                     subjects: tuple[str, ...], usage: Any = None,
                     budget_subjects: tuple[str, ...] = ()) -> Post | Void:
    """The write that closes a request's hold: a void when nothing is charged, else a post.

    ``usage`` (result -> usage record) makes the request's usage record part of the same write.
    """
    assert cost >= 0 and held > 0
    if cost == 0:
        return VoidRequest(org_id, None, hold_id=hold_id, scope=scope, subjects=subjects, usage=usage,
                           budget_subjects=budget_subjects)
    return SettleRequest(org_id, None, hold_id=hold_id, actual=min(cost, held), cost=cost,
                         held=held, scope=scope, subjects=subjects, usage=usage,
                         budget_subjects=budget_subjects)


@dataclass(frozen=True, slots=True)
class ReserveAndSettle(_CarriesUsage, Operation):
    """Reserve ``reserve`` and settle it at ``cost`` at once (see the module docstring).

    Refused as a whole, with nothing written, when the credits no longer cover the hold: the
    request then answers 402 exactly as if its hold had been refused before the upstream ran.
    """

    kind: ClassVar[str] = "hold_reserve_settle"
    reserve: ReserveForRequest = field(default=None)  # type: ignore[assignment]
    cost: int = 0
    usage: Any = None

    def params(self) -> dict[str, Any]:
        return {**self.reserve.params(), "cost": self.cost}

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        reserve = self.reserve
        # The plain Reserve: the balances are reported once, after the settlement below.
        held = Reserve.apply(reserve, book, now_us, None)  # raises before it changes anything
        settle = settle_operation(self.org_id, held["hold_id"], cost=self.cost, held=reserve.amount,
                                  scope=reserve.scope, subjects=reserve.subjects,
                                  budget_subjects=reserve.budget_subjects)
        return {**settle.apply(book, now_us, None), "hold_id": held["hold_id"]}
