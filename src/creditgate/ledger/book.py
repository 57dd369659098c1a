"""One organization's books inside a write batch: the pure ledger rules, no SQL.

The storage adapter loads a :class:`Book` under the organization's write lock, the operations
below change it, and the adapter writes back exactly what changed. Every operation checks all its
preconditions before it changes anything, so a refused operation leaves the book as it was and
the other operations of the same batch carry on.

Policies (documented in docs/ledger.md):
- Burn-down: eligible grants (live and covering the scope and subjects) are used by priority,
  then expiry (never-expiring last), then creation time, then id.
- A hold keeps its earmark when its grant expires or is voided while it is pending: posting it
  still consumes from that grant. Whatever the hold then releases back to a grant that is no
  longer active is booked at once as breakage (expired) or forfeit (voided).
- Overdraft: ``debit`` may go past the grants up to the organization's overdraft limit. The
  overage is a debt per scope; the next unrestricted grant covering that scope pays it off first.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import HoldNotPending, InsufficientCredits, InvalidInput, NotFound
from creditgate.ledger import journal
from creditgate.ledger.budgets import current as budget_current
from creditgate.ledger.budgets import period_start_us as budget_period_start
from creditgate.ledger.credits import format_amount
from creditgate.ledger.records import (
    ACCOUNT_BREAKAGE,
    ACCOUNT_FORFEIT,
    ACCOUNT_ISSUED,
    ACCOUNT_USAGE,
    Budget,
    Entry,
    Grant,
    Hold,
    JournalTransaction,
    Org,
    grant_account,
    hold_account,
    overdraft_account,
)

# Clearing account for credits moving from an expiring grant to its rollover grant (see
# ``Book.rollover_out``); each billing close leaves it at zero once the rollover grants exist.
ACCOUNT_ROLLOVER: Final = "rollover"


# A generator of our own: test tools (hypothesis) reseed the global one deterministically.
_IDS = random.Random()  # seeded from the operating system
os.register_at_fork(after_in_child=_IDS.seed)


def new_id(prefix: str) -> str:
    """A unique id. Ids grant no access (every read checks the caller's organization), so they
    need uniqueness, not secrecy: 80 bits from a generator seeded by the OS (and reseeded in each
    forked child) avoid a system call per id on the hot path."""
    return f"{prefix}_{_IDS.getrandbits(80):020x}"


def new_time_ordered_id(prefix: str, now_us: int) -> str:
    """A unique id that sorts by creation time (the millisecond first, then 80 random bits, as in
    ULIDs). For the rows inserted on the hot path (holds): each batch's new ids land together at
    the end of the primary-key index instead of all over it, so a commit writes a few index pages
    rather than one per row, on SQLite and PostgreSQL alike."""
    return f"{prefix}_{now_us // 1000:012x}{_IDS.getrandbits(80):020x}"


@dataclass(frozen=True, slots=True)
class GrantSpec:
    amount: int
    kind: str
    scope: str
    priority: int
    effective_at_us: int
    expires_at_us: int | None
    cost_basis: int = 0
    currency: str = "USD"
    allow: frozenset[str] | None = None
    source_grant_id: str | None = None
    rollover: str | None = None
    metadata: str = "{}"


class Book:
    """Mutable working set of immutable records for one organization during one batch."""

    def __init__(self, org: Org, grants: Iterable[Grant], holds: Iterable[Hold],
                 budgets: Iterable[Budget] = ()) -> None:
        self.org = org
        self.budgets: dict[str, Budget] = {budget.id: budget for budget in budgets}
        self.new_budget_ids: set[str] = set()
        self.changed_budget_ids: set[str] = set()
        self.grants: dict[str, Grant] = {grant.id: grant for grant in grants}
        self.holds: dict[str, Hold] = {hold.id: hold for hold in holds}
        self.new_grant_ids: set[str] = set()
        self.changed_grant_ids: set[str] = set()
        self.new_hold_ids: set[str] = set()
        self.changed_hold_ids: set[str] = set()
        # Resolved holds and closed grants loaded for one batch only (to answer about them).
        self.visiting_ids: set[str] = set()
        self.transactions: list[JournalTransaction] = []

    def settle(self) -> None:
        """Forget what was written, keeping the state: the book can serve the next batch.

        Resolved holds and closed grants no longer matter to any decision, so they are dropped
        (a later reference to one is loaded from the database again).
        """
        # Only what this batch touched or loaded can have been resolved or closed.
        for hold_id in self.new_hold_ids | self.changed_hold_ids | self.visiting_ids:
            hold = self.holds.get(hold_id)
            if hold is not None and hold.status != "pending":
                del self.holds[hold_id]
        for grant_id in self.new_grant_ids | self.changed_grant_ids | self.visiting_ids:
            grant = self.grants.get(grant_id)
            if grant is not None and grant.status != "active" and grant.held == 0:
                del self.grants[grant_id]
        self.new_grant_ids.clear()
        self.changed_grant_ids.clear()
        self.new_budget_ids.clear()
        self.changed_budget_ids.clear()
        self.new_hold_ids.clear()
        self.changed_hold_ids.clear()
        self.visiting_ids.clear()
        self.transactions.clear()

    # ----------------------------------------------------------------- reading
    def eligible(self, scope: str, subjects: tuple[str, ...], now_us: int) -> list[Grant]:
        found = [g for g in self.grants.values()
                 if g.free > 0 and g.is_live(now_us) and g.covers(scope, subjects)]
        found.sort(key=Grant.burn_order_key)
        return found

    def available(self, scope: str, subjects: tuple[str, ...], now_us: int) -> int:
        return sum(g.free for g in self.eligible(scope, subjects, now_us)) - self.org.debt(scope)

    # ----------------------------------------------------------------- grants
    def create_grant(self, spec: GrantSpec, now_us: int, *, key: str | None = None,
                     fingerprint: str | None = None, grant_id: str | None = None,
                     from_account: str = ACCOUNT_ISSUED) -> dict[str, Any]:
        grant = Grant(
            id=grant_id or new_id("grt"), org_id=self.org.id, kind=spec.kind, scope=spec.scope,
            priority=spec.priority, effective_at_us=spec.effective_at_us,
            expires_at_us=spec.expires_at_us, amount=spec.amount, remaining=spec.amount, held=0,
            created_at_us=now_us, cost_basis=spec.cost_basis, currency=spec.currency,
            allow=spec.allow, source_grant_id=spec.source_grant_id, rollover=spec.rollover,
            metadata=spec.metadata,
        )
        entries = [Entry(from_account, -spec.amount), Entry(grant_account(grant.id), spec.amount)]
        debt_paid = 0
        # Only a live grant pays: one already expired when it is booked (a billing close that
        # catches up on past periods issues such grants) would otherwise pay debt with credits
        # that can never be used.
        if grant.allow is None and grant.is_live(now_us):
            for debt_scope in ("inference", "training"):
                if grant.scope not in ("any", debt_scope):
                    continue
                pay = min(self.org.debt(debt_scope), grant.remaining)
                if pay <= 0:
                    continue
                grant = grant._replace(remaining=grant.remaining - pay)
                entries += [Entry(grant_account(grant.id), -pay, grant.id),
                            Entry(overdraft_account(debt_scope), pay, grant.id)]
                self._change_debt(debt_scope, -pay)
                debt_paid += pay
        self.grants[grant.id] = grant
        self.new_grant_ids.add(grant.id)
        result = {"grant_id": grant.id, "amount": spec.amount, "debt_paid": debt_paid,
                  "terms": journal.grant_terms(grant)}
        self._append("grant", now_us, grant.id, key, fingerprint, result, entries)
        return result

    def void_grant(self, grant_id: str, now_us: int, *, key: str | None = None,
                   fingerprint: str | None = None) -> dict[str, Any]:
        grant = self._grant(grant_id)
        if grant.status != "active":
            raise InvalidInput(f"grant {grant_id} is already {grant.status}", param="grant_id")
        return self._close_grant(grant, "voided", ACCOUNT_FORFEIT, "grant_void", now_us, key, fingerprint)

    def expire_grant(self, grant_id: str, now_us: int) -> dict[str, Any]:
        grant = self._grant(grant_id)
        assert grant.status == "active" and grant.expires_at_us is not None
        assert grant.expires_at_us <= now_us
        return self._close_grant(grant, "expired", ACCOUNT_BREAKAGE, "grant_expire", now_us, None, None)

    def _close_grant(self, grant: Grant, status: str, account: str, kind: str, now_us: int,
                     key: str | None, fingerprint: str | None) -> dict[str, Any]:
        lost = grant.free
        self._put_grant(grant._replace(status=status, remaining=grant.held))
        entries = []
        if lost:
            entries = [Entry(grant_account(grant.id), -lost, grant.id), Entry(account, lost, grant.id)]
        result = {"grant_id": grant.id, "lost": lost, "cost_basis_lost": self.cost_basis_of(grant, lost),
                  "still_held": grant.held}
        self._append(kind, now_us, grant.id, key, fingerprint, result, entries)
        return result

    def rollover_out(self, grant_id: str, rolled: int, now_us: int, *,
                     recovered_from_breakage: bool = False) -> dict[str, Any]:
        """Close a grant at its expiry, moving ``rolled`` of its free credits to the ``rollover``
        clearing account and booking the rest as breakage, in one journal transaction.

        The billing close then creates the ``rollover`` grant from that account with
        :meth:`create_grant` (``from_account=ACCOUNT_ROLLOVER``), so the clearing account
        returns to zero and every credit stays traceable. A grant that something else already
        expired (``recovered_from_breakage``) gets its rolled part back out of breakage instead.
        """
        grant = self._grant(grant_id)
        assert rolled > 0 and grant.expires_at_us is not None and grant.expires_at_us <= now_us
        if recovered_from_breakage:
            assert grant.status == "expired"
            source, lost = ACCOUNT_BREAKAGE, 0
        else:
            assert grant.status == "active" and rolled <= grant.free
            source, lost = grant_account(grant.id), grant.free - rolled
            self._put_grant(grant._replace(status="expired", remaining=grant.held))
        entries = [Entry(source, -rolled, grant.id), Entry(ACCOUNT_ROLLOVER, rolled, grant.id)]
        if lost:
            entries += [Entry(grant_account(grant.id), -lost, grant.id),
                        Entry(ACCOUNT_BREAKAGE, lost, grant.id)]
        result = {"grant_id": grant.id, "rolled": rolled, "lost": lost,
                  "cost_basis_rolled": self.cost_basis_of(grant, rolled),
                  "cost_basis_lost": self.cost_basis_of(grant, lost), "still_held": grant.held,
                  "recovered_from_breakage": recovered_from_breakage}
        self._append("grant_rollover", now_us, grant.id, None, None, result, entries)
        return result

    def note(self, kind: str, now_us: int, result: dict[str, Any], *, ref: str | None = None,
             key: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
        """Append a transaction without entries: a marker in the hash chain (a period close)."""
        self._append(kind, now_us, ref, key, fingerprint, result, [])
        return result

    @staticmethod
    def cost_basis_of(grant: Grant, credits: int) -> int:
        """The money behind ``credits`` of a grant, pro rata, rounded by the one rounding rule."""
        from creditgate.ledger.credits import divide_round_half_up

        return divide_round_half_up(grant.cost_basis * credits, grant.amount)

    # ----------------------------------------------------------------- holds
    def reserve(self, amount: int, scope: str, ttl_us: int, now_us: int, *,
                subjects: tuple[str, ...] = (), model: str | None = None, metadata: str = "{}",
                key: str | None = None, fingerprint: str | None = None,
                hold_id: str | None = None, budget_subjects: tuple[str, ...] = ()) -> dict[str, Any]:
        assert amount > 0 and ttl_us > 0
        eligible = self.eligible(scope, subjects, now_us)
        available = sum(g.free for g in eligible) - self.org.debt(scope)
        if available < amount:
            raise self._insufficient(available, amount)
        budgets = self._check_budgets(budget_subjects, amount, now_us)
        hold_id = hold_id or new_time_ordered_id("hld", now_us)
        legs: list[tuple[str, int]] = []
        entries: list[Entry] = []
        needed = amount
        for grant in eligible:
            take = min(grant.free, needed)
            legs.append((grant.id, take))
            entries += [Entry(grant_account(grant.id), -take, grant.id),
                        Entry(hold_account(hold_id), take, grant.id)]
            self._put_grant(grant.with_amounts(grant.remaining, grant.held + take))
            needed -= take
            if needed == 0:
                break
        for budget in budgets:
            self._put_budget(budget._replace(held=budget.held + amount))
        hold = Hold(id=hold_id, org_id=self.org.id, amount=amount, scope=scope, status="pending",
                    created_at_us=now_us, expires_at_us=now_us + ttl_us, legs=tuple(legs),
                    model=model, metadata=metadata, budgets=tuple(b.id for b in budgets))
        self.holds[hold_id] = hold
        self.new_hold_ids.add(hold_id)
        result = {"hold_id": hold_id, "amount": amount, "expires_at_us": hold.expires_at_us,
                  "legs": [list(leg) for leg in legs]}
        self._append("hold_reserve", now_us, hold_id, key, fingerprint, result, entries)
        return result

    def post(self, hold_id: str, actual: int, now_us: int, *, key: str | None = None,
             fingerprint: str | None = None) -> dict[str, Any]:
        hold = self._pending_hold(hold_id, now_us)
        if actual < 0 or actual > hold.amount:
            raise InvalidInput(
                f"actual {format_amount(actual)} must be between 0 and the held "
                f"{format_amount(hold.amount)}", param="actual")
        return self._resolve(hold, actual, "posted", "hold_post", now_us, key, fingerprint)

    def void(self, hold_id: str, now_us: int, *, key: str | None = None,
             fingerprint: str | None = None) -> dict[str, Any]:
        hold = self._pending_hold(hold_id, now_us)
        return self._resolve(hold, 0, "voided", "hold_void", now_us, key, fingerprint)

    def expire_hold(self, hold_id: str, now_us: int) -> dict[str, Any]:
        hold = self.holds[hold_id]
        assert hold.status == "pending" and hold.expires_at_us <= now_us
        return self._resolve(hold, 0, "expired", "hold_expire", now_us, None, None)

    def _pending_hold(self, hold_id: str, now_us: int) -> Hold:
        hold = self.holds.get(hold_id)
        if hold is None or hold.org_id != self.org.id:
            raise NotFound(f"hold {hold_id} not found", param="hold_id")
        if hold.status == "pending" and hold.expires_at_us <= now_us:
            # Lazily expire: the caller learns the truth and the credits come back now.
            self.expire_hold(hold_id, now_us)
            hold = self.holds[hold_id]
        if hold.status != "pending":
            raise HoldNotPending(f"hold {hold_id} is already {hold.status}", param="hold_id",
                                 hold_status=hold.status)
        return hold

    def _resolve(self, hold: Hold, actual: int, status: str, kind: str, now_us: int,
                 key: str | None, fingerprint: str | None) -> dict[str, Any]:
        entries: list[Entry] = []
        paid: list[list[Any]] = []
        to_consume = actual
        released_total = 0
        for grant_id, leg_amount in hold.legs:
            grant = self.grants[grant_id]
            consume = min(leg_amount, to_consume)
            release = leg_amount - consume
            to_consume -= consume
            if consume:
                entries += [Entry(hold_account(hold.id), -consume, grant_id),
                            Entry(ACCOUNT_USAGE, consume, grant_id)]
                paid.append([grant_id, consume])
            remaining = grant.remaining - consume
            if release:
                released_total += release
                if grant.status == "active":
                    entries += [Entry(hold_account(hold.id), -release, grant_id),
                                Entry(grant_account(grant_id), release, grant_id)]
                else:
                    # The grant expired or was voided while the hold was pending.
                    lost_to = ACCOUNT_BREAKAGE if grant.status == "expired" else ACCOUNT_FORFEIT
                    entries += [Entry(hold_account(hold.id), -release, grant_id),
                                Entry(lost_to, release, grant_id)]
                    remaining -= release
            self._put_grant(grant.with_amounts(remaining, grant.held - leg_amount))
        assert to_consume == 0
        for budget_id in hold.budgets:
            budget = self.budgets.get(budget_id)
            if budget is not None:
                budget = budget_current(budget, now_us)
                self._put_budget(budget._replace(held=budget.held - hold.amount, spent=budget.spent + actual))
        self.holds[hold.id] = hold.resolved(status, actual, now_us)
        self.changed_hold_ids.add(hold.id)
        result = {"hold_id": hold.id, "status": status, "posted": actual,
                  "released": released_total, "paid": paid}
        self._append(kind, now_us, hold.id, key, fingerprint, result, entries)
        return result

    # ----------------------------------------------------------------- debits
    def debit(self, amount: int, scope: str, now_us: int, *, subjects: tuple[str, ...] = (),
              ref: str | None = None, key: str | None = None,
              fingerprint: str | None = None, budget_subjects: tuple[str, ...] = (),
              budgets_refuse: bool = True) -> dict[str, Any]:
        """``budgets_refuse`` False: the debit counts against the budgets without being refused
        by a hard one (a charge for what was already used, such as an upstream's excess over its
        hold: the budget stopped what it could when the hold was taken)."""
        assert amount > 0
        eligible = self.eligible(scope, subjects, now_us)
        covered = min(amount, sum(g.free for g in eligible))
        overage = amount - covered
        headroom = self.org.overdraft_limit - self.org.debt_total
        if overage > headroom:
            available = covered - self.org.debt(scope)
            raise self._insufficient(available, amount, overdraft_headroom=format_amount(headroom))
        for budget in self._check_budgets(budget_subjects, amount, now_us, refuse=budgets_refuse):
            self._put_budget(budget._replace(spent=budget.spent + amount))
        entries: list[Entry] = []
        paid: list[list[Any]] = []
        needed = covered
        for grant in eligible:
            if needed == 0:
                break
            take = min(grant.free, needed)
            entries += [Entry(grant_account(grant.id), -take, grant.id),
                        Entry(ACCOUNT_USAGE, take, grant.id)]
            paid.append([grant.id, take])
            self._put_grant(grant.with_amounts(grant.remaining - take, grant.held))
            needed -= take
        if overage:
            entries += [Entry(overdraft_account(scope), -overage), Entry(ACCOUNT_USAGE, overage)]
            self._change_debt(scope, overage)
        result = {"debited": amount, "overage": overage, "paid": paid}
        self._append("debit", now_us, ref, key, fingerprint, result, entries)
        return result

    # ----------------------------------------------------------------- time
    def expire_due_holds(self, now_us: int) -> int:
        """Expire every loaded pending hold past its ttl, so that its credits come back."""
        count = 0
        for hold in list(self.holds.values()):
            if hold.status == "pending" and hold.expires_at_us <= now_us:
                self.expire_hold(hold.id, now_us)
                count += 1
        return count

    def expire_due(self, now_us: int) -> int:
        """Expire every pending hold past its ttl and every grant past its expiry; count them."""
        count = self.expire_due_holds(now_us)
        for grant in list(self.grants.values()):
            if (grant.status == "active" and grant.expires_at_us is not None
                    and grant.expires_at_us <= now_us):
                self.expire_grant(grant.id, now_us)
                count += 1
        return count

    # ----------------------------------------------------------------- budgets
    def set_budget(self, subject: str, cap: int, mode: str, period: str, now_us: int, *,
                   key: str | None = None, fingerprint: str | None = None) -> dict[str, Any]:
        """Create or change the budget of ``subject``; recorded in the journal (no legs)."""
        existing = next((b for b in self.budgets.values() if b.subject == subject), None)
        if existing is None:
            budget = Budget(id=new_id("bdg"), org_id=self.org.id, subject=subject, cap=cap, mode=mode,
                            period=period, spent=0, held=0, period_start_us=budget_period_start(period, now_us),
                            created_at_us=now_us)
            self.budgets[budget.id] = budget
            self.new_budget_ids.add(budget.id)
        else:
            budget = budget_current(existing, now_us)._replace(cap=cap, mode=mode, period=period)
            self._put_budget(budget)
        result = {"budget_id": budget.id, "subject": subject, "cap": cap, "mode": mode, "period": period}
        self._append("budget_set", now_us, budget.id, key, fingerprint, result, [])
        return result

    def _check_budgets(self, subjects: tuple[str, ...], amount: int, now_us: int, *,
                       refuse: bool = True) -> list[Budget]:
        """The budgets an amount counts against, as of now; refuses one a hard budget cannot take
        (unless ``refuse`` is False)."""
        found = self._budgets_of(subjects, now_us)
        for budget in found if refuse else ():
            room = budget.cap - budget.spent - budget.held
            if budget.mode == "hard" and amount > room:
                raise InsufficientCredits(
                    f"budget of {budget.subject} exhausted: {format_amount(max(room, 0))} left of "
                    f"{format_amount(budget.cap)} this {budget.period}, {format_amount(amount)} required",
                    available=format_amount(max(room, 0)), required=format_amount(amount),
                    limit_source=f"budget:{budget.subject}", budget_id=budget.id)
        return found

    def budget_room(self, subjects: tuple[str, ...], now_us: int) -> int | None:
        """What the hard budgets of ``subjects`` still let through as of now (the least of them),
        or None when no hard budget applies."""
        rooms = [b.cap - b.spent - b.held for b in self._budgets_of(subjects, now_us) if b.mode == "hard"]
        return max(min(rooms), 0) if rooms else None

    def _budgets_of(self, subjects: tuple[str, ...], now_us: int) -> list[Budget]:
        """The budgets (not off) of ``subjects``, as of now."""
        if not subjects or not self.budgets:
            return []
        return [budget_current(b, now_us) for b in self.budgets.values()
                if b.subject in subjects and b.mode != "off"]

    def _put_budget(self, budget: Budget) -> None:
        self.budgets[budget.id] = budget
        if budget.id not in self.new_budget_ids:
            self.changed_budget_ids.add(budget.id)

    # ----------------------------------------------------------------- internals
    def _grant(self, grant_id: str) -> Grant:
        grant = self.grants.get(grant_id)
        if grant is None or grant.org_id != self.org.id:
            raise NotFound(f"grant {grant_id} not found", param="grant_id")
        return grant

    def _put_grant(self, grant: Grant) -> None:
        self.grants[grant.id] = grant
        if grant.id not in self.new_grant_ids:
            self.changed_grant_ids.add(grant.id)

    def _change_debt(self, scope: str, delta: int) -> None:
        if scope == "training":
            self.org = self.org._replace(debt_training=self.org.debt_training + delta)
        else:
            self.org = self.org._replace(debt_inference=self.org.debt_inference + delta)

    def _insufficient(self, available: int, required: int, **details: Any) -> InsufficientCredits:
        shown = max(available, 0)
        return InsufficientCredits(
            f"insufficient credits: {format_amount(shown)} available, {format_amount(required)} required",
            available=format_amount(shown), required=format_amount(required), **details)

    def _append(self, kind: str, now_us: int, ref: str | None, key: str | None,
                fingerprint: str | None, result: dict[str, Any], entries: list[Entry]) -> None:
        assert sum(entry.amount for entry in entries) == 0, entries
        org = self.org
        seq = org.chain_seq + 1
        result_text = journal.canonical_json(result).decode()
        # Serialized once: hashed and stored as the same text.
        entries_text = journal.entries_json(entries)
        digest = journal.transaction_hash(
            prev_hash=org.chain_head, org_id=org.id, seq=seq, kind=kind, at_us=now_us,
            ref=ref, idempotency_key=key, fingerprint=fingerprint, result=result_text,
            entries_text=entries_text)
        self.transactions.append(JournalTransaction(
            org.id, seq, kind, now_us, ref, key, fingerprint, result_text, org.chain_head, digest,
            tuple(entries), entries_text.decode()))
        self.org = org.with_chain(seq, digest)
