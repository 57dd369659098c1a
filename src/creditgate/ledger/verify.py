"""Proving the ledger's history: recompute every hash chain and re-derive every balance.

``audit_org`` is pure: given one organization's rows it returns the problems found, first one
first. ``verify`` reads the rows and runs it for every organization, then checks the schema's
own invariants (useful when constraints were disabled or a file was edited by hand).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from creditgate.ledger import journal
from creditgate.ledger.records import (
    GENESIS_HASH,
    Budget,
    Entry,
    Grant,
    Hold,
    Org,
    grant_account,
    hold_account,
    overdraft_account,
)

_HOLD_STATUS_BY_KIND = {"hold_reserve": "pending", "hold_post": "posted", "hold_void": "voided",
                        "hold_expire": "expired"}
_GRANT_STATUS_BY_KIND = {"grant": "active", "grant_void": "voided", "grant_expire": "expired",
                         "grant_rollover": "expired"}
# What a budget_set entry records and a budget row must still say.
_BUDGET_TERMS = ("subject", "cap", "mode", "period")


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    org_id: str
    seq: int
    kind: str
    at_us: int
    ref: str | None
    idempotency_key: str | None
    fingerprint: str | None
    result: str
    entries: str
    prev_hash: str
    hash: str


@dataclass
class VerifyReport:
    organizations: int = 0
    transactions: int = 0
    grants: int = 0
    holds: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "organizations": self.organizations, "transactions": self.transactions,
                "grants": self.grants, "holds": self.holds,
                "first_problem": self.problems[0] if self.problems else None,
                "problems": self.problems[:50]}


def audit_org(org: Org, transactions: Sequence[StoredTransaction], grants: Iterable[Grant],
              holds: Iterable[Hold], budgets: Iterable[Budget] | None = None, *,
              unreadable: Collection[str] = ()) -> list[str]:
    """The problems of one organization, first one first.

    ``budgets`` None leaves budgets unchecked (for callers that have none at hand); ``unreadable``
    names rows that exist but could not be read (the caller reports them): they are not missing.
    """
    problems: list[str] = []
    balances: dict[str, int] = defaultdict(int)
    hold_by_grant: dict[tuple[str, str | None], int] = defaultdict(int)
    issued: dict[str, int] = {}
    hold_status: dict[str, str] = {}
    hold_amount: dict[str, int] = {}
    hold_posted: dict[str, int] = defaultdict(int)
    # What the journal says about each grant and hold beyond amounts: terms, times, status, legs.
    grant_facts: dict[str, dict[str, Any]] = {}
    hold_facts: dict[str, dict[str, Any]] = {}
    # The terms of each budget as its latest budget_set entry recorded them.
    budget_facts: dict[str, dict[str, Any]] = {}
    previous = GENESIS_HASH
    for expected_seq, tx in enumerate(transactions, start=1):
        where = f"org {org.id} journal entry {tx.seq}"
        if tx.seq != expected_seq:
            problems.append(f"{where}: expected sequence number {expected_seq} (an entry is missing or moved)")
            return problems
        if tx.prev_hash != previous:
            problems.append(f"{where}: prev_hash does not match the hash of entry {tx.seq - 1}")
            return problems
        try:
            legs = [Entry(account, amount, grant_id) for account, grant_id, amount in orjson.loads(tx.entries)]
        except (orjson.JSONDecodeError, ValueError, TypeError):
            problems.append(f"{where}: entries are not readable")
            return problems
        if not all(_well_typed(leg) for leg in legs):
            problems.append(f"{where}: entries are not readable (a leg is not account, grant id, amount)")
            return problems
        digest = journal.transaction_hash(
            prev_hash=tx.prev_hash, org_id=tx.org_id, seq=tx.seq, kind=tx.kind, at_us=tx.at_us,
            ref=tx.ref, idempotency_key=tx.idempotency_key, fingerprint=tx.fingerprint,
            result=tx.result, entries=legs)
        if digest != tx.hash:
            problems.append(f"{where}: hash does not match its contents (edited)")
            return problems
        if sum(leg.amount for leg in legs) != 0:
            problems.append(f"{where}: entries do not sum to zero")
        previous = tx.hash
        for leg in legs:
            balances[leg.account] += leg.amount
            if leg.account.startswith("hold:"):
                hold_by_grant[(leg.account[5:], leg.grant_id)] += leg.amount
            if leg.account == "usage" and tx.kind == "hold_post" and tx.ref:
                hold_posted[tx.ref] += leg.amount
        # The hash proves the result is as written, not that creditgate wrote it: a whole chain
        # can be recomputed after an edit. A result without the fields is reported, not raised.
        try:
            if tx.kind == "grant" and tx.ref:
                issued_result = orjson.loads(tx.result)
                issued[tx.ref] = issued_result["amount"]
                grant_facts[tx.ref] = {"terms": issued_result.get("terms"), "created_at_us": tx.at_us}
            if tx.kind in _GRANT_STATUS_BY_KIND and tx.ref in grant_facts:
                grant_facts[tx.ref]["status"] = _GRANT_STATUS_BY_KIND[tx.kind]
            if tx.kind in _HOLD_STATUS_BY_KIND and tx.ref:
                hold_status[tx.ref] = _HOLD_STATUS_BY_KIND[tx.kind]
                if tx.kind == "hold_reserve":
                    reserved = orjson.loads(tx.result)
                    hold_amount[tx.ref] = reserved["amount"]
                    hold_facts[tx.ref] = {"created_at_us": tx.at_us, "expires_at_us": reserved["expires_at_us"],
                                          "legs": [tuple(leg) for leg in reserved["legs"]]}
            if tx.kind == "budget_set" and tx.ref:
                terms = orjson.loads(tx.result)
                budget_facts[tx.ref] = {name: terms[name] for name in _BUDGET_TERMS}
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError):
            problems.append(f"{where}: result is not readable")
            return problems
    if org.chain_seq != len(transactions) or org.chain_head != previous:
        problems.append(f"org {org.id}: chain head says entry {org.chain_seq}, the journal ends at "
                        f"{len(transactions)} (entries were deleted or the head was edited)")
    for scope in ("inference", "training"):
        if org.debt(scope) != -balances.get(overdraft_account(scope), 0):
            problems.append(f"org {org.id}: {scope} debt {org.debt(scope)} differs from the journal")
    pending_by_grant: dict[str, int] = defaultdict(int)
    holds, grants = list(holds), list(grants)
    pending_by_budget: dict[str, int] = defaultdict(int)
    for hold in holds:
        if hold.status == "pending":
            for budget_id in hold.budgets:
                pending_by_budget[budget_id] += hold.amount
    # Rows the journal created must still exist: a deleted row would take its credits with it.
    for missing in sorted(set(hold_amount) - {hold.id for hold in holds} - set(unreadable)):
        problems.append(f"org {org.id} hold {missing}: in the journal but its row is missing")
    for missing in sorted(set(issued) - {grant.id for grant in grants} - set(unreadable)):
        problems.append(f"org {org.id} grant {missing}: in the journal but its row is missing")
    if budgets is not None:
        budgets = list(budgets)
        # A deleted budget would lift its cap as surely as an edited one.
        for missing in sorted(set(budget_facts) - {budget.id for budget in budgets} - set(unreadable)):
            problems.append(f"org {org.id} budget {missing}: in the journal but its row is missing")
    for hold in holds:
        where = f"org {org.id} hold {hold.id}"
        if hold_amount.get(hold.id) != hold.amount:
            problems.append(f"{where}: amount {hold.amount} differs from the journal")
        if hold_status.get(hold.id) != hold.status:
            problems.append(f"{where}: status {hold.status} differs from the journal")
        if hold_posted.get(hold.id, 0) != hold.posted:
            problems.append(f"{where}: posted {hold.posted} differs from the journal")
        expected = hold.amount if hold.status == "pending" else 0
        if balances.get(hold_account(hold.id), 0) != expected:
            problems.append(f"{where}: journal holds {balances.get(hold_account(hold.id), 0)}, expected {expected}")
        if sum(amount for _, amount in hold.legs) != hold.amount:
            problems.append(f"{where}: legs do not add up to the amount")
        problems.extend(_fact_problems(where, hold_facts.get(hold.id), {
            "created_at_us": hold.created_at_us, "expires_at_us": hold.expires_at_us,
            "legs": [tuple(leg) for leg in hold.legs]}))
        if hold.status == "pending":
            for grant_id, amount in hold.legs:
                pending_by_grant[grant_id] += amount
                if hold_by_grant.get((hold.id, grant_id), 0) != amount:
                    problems.append(f"{where}: leg on grant {grant_id} differs from the journal")
    for budget in budgets or ():
        where = f"org {org.id} budget {budget.id}"
        if budget.held != pending_by_budget.get(budget.id, 0):
            problems.append(f"{where}: held {budget.held} differs from its pending holds")
        if budget.id not in budget_facts:
            problems.append(f"{where}: not in the journal (no budget_set entry created it)")
            continue
        problems.extend(_fact_problems(where, budget_facts[budget.id],
                                       {name: getattr(budget, name) for name in _BUDGET_TERMS}))
    for grant in grants:
        where = f"org {org.id} grant {grant.id}"
        if issued.get(grant.id) != grant.amount:
            problems.append(f"{where}: amount {grant.amount} differs from the journal")
        if balances.get(grant_account(grant.id), 0) != grant.remaining - grant.held:
            problems.append(f"{where}: remaining {grant.remaining} (held {grant.held}) differs from the "
                            f"journal's {balances.get(grant_account(grant.id), 0)} free")
        if pending_by_grant.get(grant.id, 0) != grant.held:
            problems.append(f"{where}: held {grant.held} differs from its pending holds")
        if grant.status != "active" and grant.remaining != grant.held:
            problems.append(f"{where}: a {grant.status} grant still has free credits")
        facts = grant_facts.get(grant.id)
        if facts is not None:
            stated = {"created_at_us": grant.created_at_us, "status": grant.status}
            if facts["terms"] is not None:  # journals written before terms were recorded lack them
                stated["terms"] = journal.grant_terms(grant)
            problems.extend(_fact_problems(where, facts, stated))
    return problems


def _well_typed(leg: Entry) -> bool:
    return (isinstance(leg.account, str) and type(leg.amount) is int
            and (leg.grant_id is None or isinstance(leg.grant_id, str)))


def _fact_problems(where: str, journal_facts: dict[str, Any] | None, row: dict[str, Any]) -> list[str]:
    """Compare a grant's or hold's row with what its journal entries recorded, field by field."""
    if journal_facts is None:
        return []  # an id the journal never issued is already reported by the amount check
    problems = []
    for name, value in row.items():
        if journal_facts.get(name) != value:
            if isinstance(value, dict):
                fields = sorted(key for key in value if value[key] != (journal_facts.get(name) or {}).get(key))
                problems.append(f"{where}: {', '.join(fields)} differ from the journal")
            else:
                problems.append(f"{where}: {name} {value} differs from the journal")
    return problems


def verify(database: Any) -> VerifyReport:
    """Audit every organization in ``database`` (a :class:`creditgate.storage.database.Database`)."""
    from creditgate.storage import verify_reader

    report = VerifyReport()
    with database.read() as connection:
        for rows in verify_reader.iter_orgs(connection):
            report.organizations += 1
            report.transactions += len(rows.transactions)
            report.grants += len(rows.grants)
            report.holds += len(rows.holds)
            # A damaged row first: what the audit then finds may only be its consequence.
            report.problems.extend(rows.damaged.values())
            if rows.org is not None:
                report.problems.extend(audit_org(rows.org, rows.transactions, rows.grants, rows.holds,
                                                 rows.budgets, unreadable=rows.damaged.keys()))
        report.problems.extend(verify_reader.schema_problems(connection))
    return report
