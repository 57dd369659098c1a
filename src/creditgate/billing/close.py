"""Closing a billing period: expiry, rollover, the statement; idempotent and safe with several
processes.

One close of period P is one ledger operation, :class:`ClosePeriod`, run by the group-commit
writer under the organization's write lock:

1. every active grant whose expiry is at or before the end of P either expires (its free credits
   become breakage, with their cost basis) or, when its rollover policy keeps some, is closed by
   ``Book.rollover_out``: the kept part goes to the ``rollover`` clearing account, the rest to
   breakage;
2. a ``period_close`` marker transaction (no entries, idempotency key ``period-close:<start>``)
   records where P ends in the hash chain: its seq is P's ``cut_seq``;
3. the ``rollover`` grants are created from the clearing account (after the marker, so they are
   the next period's "rollovers in").

A second close of P replays the marker's result, so nothing is booked twice. The statement is
then built from the journal, signed and stored (once, by a unique key), and the next period's
recurring allowances are granted (idempotency-keyed too). A crash between the steps is repaired
by running the close again. ``close_due`` runs under a database lease so that only one process
does the work at a time; correctness does not depend on the lease, only efficiency.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson
from sqlalchemy import select

from creditgate.billing import statement_store
from creditgate.billing.cycles import Cycle, load_cycle, save_cycle
from creditgate.billing.periods import Period, period_at, period_starting_at, periods_ended_by
from creditgate.billing.rollover import (
    EXPIRES_AFTER_PERIODS_MAX,
    NO_ROLLOVER,
    RolloverPolicy,
    next_policy,
    parse_policy,
    rolled_amount,
)
from creditgate.errors import CreditgateError, InvalidInput
from creditgate.ledger.book import ACCOUNT_ROLLOVER, Book, GrantSpec
from creditgate.ledger.journal import canonical_json
from creditgate.ledger.operations import Operation
from creditgate.ledger.records import Grant
from creditgate.storage.schema import grants, journal_transactions

PERIODS_PER_RUN_MAX: Final = 24
ORGS_PAGE_SIZE: Final = 500
log = logging.getLogger(__name__)


def policy_of(grant: Grant) -> RolloverPolicy:
    """A grant's rollover policy. Policies are validated when they are set through billing; a
    grant created directly through the ledger with an unreadable policy does not roll over."""
    try:
        return parse_policy(grant.rollover)
    except CreditgateError:
        log.warning("grant %s has an unreadable rollover policy; it does not roll over", grant.id)
        return NO_ROLLOVER


@dataclass(frozen=True, slots=True)
class ClosePeriod(Operation):
    kind: ClassVar[str] = "period_close"
    period_index: int = 0
    period_start_us: int = 0
    period_end_us: int = 0
    # End of period P+k for k = 1..EXPIRES_AFTER_PERIODS_MAX: where rollover grants expire.
    rollover_expiries_us: tuple[int, ...] = ()
    # Grants that something else expired before this close (grant id, free credits lost then).
    recover: tuple[tuple[str, int], ...] = ()

    def params(self) -> dict[str, Any]:
        return {"period_index": self.period_index, "period_start_us": self.period_start_us,
                "period_end_us": self.period_end_us}

    def grant_ids(self) -> tuple[str, ...]:
        return tuple(grant_id for grant_id, _ in self.recover)

    def apply(self, book: Book, now_us: int, fingerprint: str | None) -> dict[str, Any]:
        assert self.period_end_us <= now_us, "a period closes only after it ends"
        assert len(self.rollover_expiries_us) == EXPIRES_AFTER_PERIODS_MAX
        due = sorted((g for g in book.grants.values() if g.status == "active"
                      and g.expires_at_us is not None and g.expires_at_us <= self.period_end_us),
                     key=lambda g: (g.expires_at_us or 0, g.id))
        plans: list[tuple[Grant, int, RolloverPolicy]] = []
        expired = 0
        for grant in due:
            policy = policy_of(grant)
            rolled = rolled_amount(policy, grant.amount, grant.free)
            if rolled:
                book.rollover_out(grant.id, rolled, now_us)
                plans.append((grant, rolled, policy))
            else:
                book.expire_grant(grant.id, now_us)
                expired += 1
        for grant_id, lost in self.recover:
            found = book.grants.get(grant_id)
            if found is None or found.status != "expired":
                continue
            grant = found
            policy = policy_of(grant)
            rolled = rolled_amount(policy, grant.amount, lost)
            if rolled:
                book.rollover_out(grant.id, rolled, now_us, recovered_from_breakage=True)
                plans.append((grant, rolled, policy))
        result = {"period_index": self.period_index, "period_start_us": self.period_start_us,
                  "period_end_us": self.period_end_us, "effective_at_us": self.period_end_us - 1,
                  "cut_seq": book.org.chain_seq + 1, "expired": expired,
                  "rolled": [[grant.id, rolled] for grant, rolled, _ in plans]}
        book.note(self.kind, now_us, result, ref=f"period:{self.period_index}",
                  key=self.idempotency_key, fingerprint=fingerprint)
        created = [self._rollover_grant(book, grant, rolled, policy, now_us)
                   for grant, rolled, policy in plans]
        return {**result, "rollover_grants": created}

    def _rollover_grant(self, book: Book, origin: Grant, rolled: int, policy: RolloverPolicy,
                        now_us: int) -> str:
        spec = GrantSpec(
            amount=rolled, kind="rollover", scope=origin.scope,
            priority=origin.priority if policy.priority is None else policy.priority,
            effective_at_us=self.period_end_us,
            expires_at_us=self.rollover_expiries_us[policy.expires_after_periods - 1],
            cost_basis=book.cost_basis_of(origin, rolled), currency=origin.currency,
            allow=origin.allow, source_grant_id=origin.id,
            rollover=canonical_json(next_policy(policy).to_json()).decode(),
            metadata=canonical_json({"rolled_from_period": self.period_index}).decode())
        return str(book.create_grant(spec, now_us, from_account=ACCOUNT_ROLLOVER)["grant_id"])


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    org_id: str
    period: Period
    cut_seq: int
    statement_id: str
    expired: int
    rolled: tuple[tuple[str, int], ...]
    replayed: bool

    def to_dict(self) -> dict[str, Any]:
        from creditgate.clock import iso
        from creditgate.ledger.credits import format_amount

        return {"org_id": self.org_id, "period_index": self.period.index,
                "period_start": iso(self.period.start_us), "period_end": iso(self.period.end_us),
                "cut_seq": self.cut_seq, "statement_id": self.statement_id, "expired": self.expired,
                "rolled": [{"grant_id": g, "amount": format_amount(a)} for g, a in self.rolled],
                "replayed": self.replayed}


@dataclass
class CloseReport:
    closed: list[CloseOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped_lease: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"closed": [outcome.to_dict() for outcome in self.closed], "errors": self.errors,
                "skipped_lease": self.skipped_lease}


def _recoverable(connection: Any, org_id: str, period: Period) -> tuple[tuple[str, int], ...]:
    rows = connection.execute(select(grants.c.id).where(
        (grants.c.org_id == org_id) & (grants.c.status == "expired") & grants.c.rollover.is_not(None)
        & (grants.c.expires_at_us > period.start_us) & (grants.c.expires_at_us <= period.end_us))).all()
    found = []
    for row in rows:
        expiry = connection.execute(select(journal_transactions.c.result).where(
            (journal_transactions.c.org_id == org_id) & (journal_transactions.c.kind == "grant_expire")
            & (journal_transactions.c.ref == row.id))).first()
        if expiry is not None:
            lost = int(orjson.loads(expiry.result).get("lost", 0))
            if lost > 0:
                found.append((row.id, lost))
    return tuple(sorted(found))


def close_one(billing: Any, cycle: Cycle, period: Period) -> CloseOutcome:
    """Close one period whose predecessors are closed (or that is the first)."""
    now = billing.clock.now_us()
    if period.end_us > now:
        raise InvalidInput("that period has not ended yet", param="period_start")
    with billing.database.read() as connection:
        recover = _recoverable(connection, cycle.org_id, period)
    expiries = tuple(period_at(cycle.spec, period.index + k).end_us
                     for k in range(1, EXPIRES_AFTER_PERIODS_MAX + 1))
    result = billing.ledger.execute(ClosePeriod(
        cycle.org_id, f"period-close:{period.start_us}", period_index=period.index,
        period_start_us=period.start_us, period_end_us=period.end_us,
        rollover_expiries_us=expiries, recover=recover))
    document = statement_store.produce(billing.database, cycle.org_id, cycle.spec.timezone, period,
                                       int(result["cut_seq"]), billing.signing_key(), now)
    billing.allowances.grant_for_period(cycle.org_id, period_at(cycle.spec, period.index + 1))
    return CloseOutcome(org_id=cycle.org_id, period=period, cut_seq=int(result["cut_seq"]),
                        statement_id=document["statement"]["statement_id"],
                        expired=int(result.get("expired", 0)),
                        rolled=tuple((g, int(a)) for g, a in result.get("rolled", [])),
                        replayed=bool(result.get("replayed", False)))


def close_org(billing: Any, org_id: str, *, through_start_us: int | None = None,
              count_max: int = PERIODS_PER_RUN_MAX) -> list[CloseOutcome]:
    """Close every ended period of one organization in order (at most ``count_max``), or up to and
    including the period starting at ``through_start_us``."""
    now = billing.clock.now_us()
    with billing.database.read() as connection:
        cycle = load_cycle(connection, org_id)
        last = statement_store.last_statement(connection, org_id)
    if not cycle.stored:
        # Write the default cycle down, so that a later default never moves its periods.
        with billing.database.write() as connection:
            cycle = load_cycle(connection, org_id)
            if not cycle.stored:
                save_cycle(connection, cycle, now)
    after = last.period_index if last is not None else -1
    if through_start_us is not None:
        target = period_starting_at(cycle.spec, through_start_us)
        if target.end_us > now:
            raise InvalidInput("that period has not ended yet (a period in the future cannot close)",
                               param="period_start")
        count_max = max(0, target.index - after)
    due = periods_ended_by(cycle.spec, now, after_index=after, count_max=count_max)
    return [close_one(billing, cycle, period) for period in due]


def close_due(billing: Any, lease: Any) -> CloseReport:
    """Close every organization's ended periods, under ``lease`` (skipped when another holds it)."""
    report = CloseReport()
    if not lease.acquire():
        report.skipped_lease = True
        return report
    try:
        after: str | None = None
        while True:
            page = billing.ledger.list_orgs(limit=ORGS_PAGE_SIZE, after=after)
            for org in page:
                try:
                    report.closed.extend(close_org(billing, org.id))
                except CreditgateError as error:
                    report.errors.append(f"{org.id}: {error.message}")
            if len(page) < ORGS_PAGE_SIZE:
                break
            after = page[-1].id
    finally:
        lease.release()
    return report
