"""Statements: one organization's period, computed from the journal alone. Pure, no I/O.

Which journal transactions belong to which period
-------------------------------------------------
Every transaction has an *effective time*: when it happened economically. That is its booking
time, except for an expiry or a rollover, whose effective time is the last instant the grant was
live (its expiry minus 1 µs), and for a transaction that states ``effective_at_us`` in its
result (the period-close marker). Period P's close records ``cut_seq``, the journal position of
its marker. Let ``A(P)`` be the transactions with ``seq <= cut_seq(P)`` and an effective time
before ``end(P)``. Both conditions only widen from one period to the next, so ``A(P-1)`` is a
subset of ``A(P)`` and the statement of P is ``A(P) - A(P-1)``: the statements partition the
journal, their sums telescope, and the closing balance of P is exactly the sum of ``A(P)``.
Usage booked after a period ended but before its close runs therefore lands in the next period,
and anything booked after a close lands in a later statement, never a signed one.

The balance is what the organization holds: its grant accounts, its pending holds, credits in
the rollover clearing account (rolled out of this period, granted at the next one's start) and
its debt (overdraft accounts, negative). Every transaction sums to zero, so
``opening + credits in - usage - breakage - forfeited = closing`` holds exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from creditgate.ledger.credits import AmountError, divide_round_half_up, format_amount, parse_amount

FORMAT: Final = "creditgate.statement/1"
TOTAL_CLASSES: Final = ("issued", "usage", "breakage", "forfeit", "grants", "holds", "overdraft",
                        "rollover")
NONE_LABEL: Final = "(none)"
BALANCE_EQUATION: Final = ("opening_balance + credits_in.total - usage.total - breakage.total "
                           "- forfeited.total = closing_balance")


@dataclass(frozen=True, slots=True)
class JournalRow:
    seq: int
    kind: str
    at_us: int
    ref: str | None
    result: Mapping[str, Any]
    entries: tuple[tuple[str, str | None, int], ...]
    hash: str = ""


@dataclass(frozen=True, slots=True)
class GrantInfo:
    id: str
    kind: str
    scope: str
    amount: int
    cost_basis: int
    currency: str
    expires_at_us: int | None
    source_grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class UsageSource:
    """What a usage booking was for: a hold (gateway request) or a debit ref (training job)."""

    model: str | None
    project: str | None
    purpose: str | None
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class PeriodCut:
    """Where a statement's transactions are in the journal (see the module docstring)."""

    end_us: int
    cut_seq: int


@dataclass
class StatementInputs:
    org_id: str
    org_name: str
    statement_id: str
    period_index: int
    period_start_us: int
    period_end_us: int
    period_label: str
    timezone: str
    cut_seq: int
    previous: PeriodCut | None
    opening_totals: Mapping[str, int]
    rows: Sequence[JournalRow]
    grants: Mapping[str, GrantInfo]
    usage_sources: Mapping[str, UsageSource]
    pending_closing_holds: int = 0
    generated_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def account_class(account: str) -> str:
    if account.startswith("grant:"):
        return "grants"
    if account.startswith("hold:"):
        return "holds"
    if account.startswith("overdraft:"):
        return "overdraft"
    assert account in ("issued", "usage", "breakage", "forfeit", "rollover"), account
    return account


def effective_us(row: JournalRow, grants: Mapping[str, GrantInfo]) -> int:
    stated = row.result.get("effective_at_us") if isinstance(row.result, Mapping) else None
    if isinstance(stated, int):
        return min(stated, row.at_us)
    if row.kind in ("grant_expire", "grant_rollover") and row.ref is not None and row.ref in grants:
        expires = grants[row.ref].expires_at_us
        if expires is not None:
            return min(expires - 1, row.at_us)
    return row.at_us


def in_cut(row: JournalRow, cut: PeriodCut | None, grants: Mapping[str, GrantInfo]) -> bool:
    return cut is not None and row.seq <= cut.cut_seq and effective_us(row, grants) < cut.end_us


def select_rows(rows: Iterable[JournalRow], previous: PeriodCut | None, current: PeriodCut,
                grants: Mapping[str, GrantInfo]) -> tuple[list[JournalRow], int]:
    """The rows of this statement, and the lowest seq not yet in any statement (the next
    statement reads from there). ``rows`` must cover every seq from the previous statement's
    ``next_low_seq`` up to ``current.cut_seq``."""
    chosen: list[JournalRow] = []
    next_low = current.cut_seq + 1
    for row in rows:
        if row.seq > current.cut_seq or in_cut(row, previous, grants):
            continue
        if in_cut(row, current, grants):
            chosen.append(row)
        else:
            next_low = min(next_low, row.seq)
    return chosen, next_low


def totals_after(opening: Mapping[str, int], rows: Iterable[JournalRow]) -> dict[str, int]:
    totals = {name: int(opening.get(name, 0)) for name in TOTAL_CLASSES}
    for row in rows:
        for account, _, amount in row.entries:
            totals[account_class(account)] += amount
    return totals


def balance_of(totals: Mapping[str, int]) -> int:
    return totals["grants"] + totals["holds"] + totals["overdraft"] + totals["rollover"]


def _money_dict(values: Mapping[str, int]) -> dict[str, str]:
    return {key: format_amount(values[key]) for key in sorted(values)}


def build(inputs: StatementInputs) -> tuple[dict[str, Any], dict[str, int], int]:
    """The statement body, its closing totals and the next low seq."""
    current = PeriodCut(inputs.period_end_us, inputs.cut_seq)
    rows, next_low = select_rows(inputs.rows, inputs.previous, current, inputs.grants)
    opening = {name: int(inputs.opening_totals.get(name, 0)) for name in TOTAL_CLASSES}
    closing = totals_after(opening, rows)
    credits_in, paid, free = _credits_in(rows, inputs.grants)
    usage = _usage(rows, inputs.usage_sources)
    breakage_items, breakage_total, breakage_cost = _breakage(rows, inputs.grants)
    rolled_out, rolled_in, roll_items = _rollovers(rows, inputs.grants)
    forfeited = closing["forfeit"] - opening["forfeit"]
    last = max(rows, key=lambda row: row.seq) if rows else None
    body: dict[str, Any] = {
        "format": FORMAT,
        "statement_id": inputs.statement_id,
        "org": {"id": inputs.org_id, "name": inputs.org_name},
        "period": {"index": inputs.period_index, "label": inputs.period_label,
                   "timezone": inputs.timezone, "start_us": inputs.period_start_us,
                   "end_us": inputs.period_end_us},
        "journal": {"cut_seq": inputs.cut_seq, "transactions": len(rows),
                    "seqs": _ranges([row.seq for row in rows]),
                    "last_hash": last.hash if last else None},
        "generated_at": inputs.generated_at,
        "unit": "credits",
        "opening_balance": format_amount(balance_of(opening)),
        "credits_in": {"total": format_amount(paid + free), "paid": format_amount(paid),
                       "free": format_amount(free), "items": credits_in},
        "usage": usage,
        "breakage": {"total": format_amount(breakage_total), "cost_basis": format_amount(breakage_cost),
                     "items": breakage_items},
        "forfeited": {"total": format_amount(forfeited)},
        "rollovers": {"out": format_amount(rolled_out), "in": format_amount(rolled_in),
                      "items": roll_items},
        "closing_parts": {"grants": format_amount(closing["grants"]),
                          "pending_holds": format_amount(closing["holds"]),
                          "rollover_in_transit": format_amount(closing["rollover"]),
                          "debt": format_amount(-closing["overdraft"])},
        "pending_holds": {"opening": format_amount(opening["holds"]),
                          "closing": format_amount(closing["holds"])},
        "closing_balance": format_amount(balance_of(closing)),
        "balance_equation": BALANCE_EQUATION,
        "journal_totals": _money_dict(closing),
        **inputs.extra,
    }
    assert check_arithmetic(body) is None, check_arithmetic(body)
    return body, closing, next_low


def _ranges(seqs: list[int]) -> list[list[int]]:
    """Compact seq list: [[first, last], ...] runs of consecutive numbers."""
    runs: list[list[int]] = []
    for seq in sorted(seqs):
        if runs and runs[-1][1] + 1 == seq:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


def _credits_in(rows: Sequence[JournalRow], grants: Mapping[str, GrantInfo]) -> tuple[list[dict[str, Any]], int, int]:
    items: list[dict[str, Any]] = []
    paid = free = 0
    for row in rows:
        issued = -sum(amount for account, _, amount in row.entries if account == "issued")
        if issued == 0:
            continue
        grant = grants.get(row.ref or "")
        is_paid = grant is not None and (grant.cost_basis > 0 or grant.kind == "purchase")
        if is_paid:
            paid += issued
        else:
            free += issued
        items.append({"grant_id": row.ref, "kind": grant.kind if grant else None,
                      "scope": grant.scope if grant else None, "amount": format_amount(issued),
                      "paid": is_paid, "cost_basis": format_amount(grant.cost_basis if grant else 0),
                      "currency": grant.currency if grant else None, "seq": row.seq})
    return items, paid, free


def _usage(rows: Sequence[JournalRow], sources: Mapping[str, UsageSource]) -> dict[str, Any]:
    by: dict[str, dict[str, int]] = {"model": defaultdict(int), "project": defaultdict(int),
                                     "purpose": defaultdict(int), "scope": defaultdict(int)}
    total = 0
    for row in rows:
        used = sum(amount for account, _, amount in row.entries if account == "usage")
        if used == 0:
            continue
        total += used
        source = sources.get(row.ref or "", UsageSource(None, None, None))
        by["model"][source.model or NONE_LABEL] += used
        by["project"][source.project or NONE_LABEL] += used
        by["purpose"][source.purpose or NONE_LABEL] += used
        by["scope"][source.scope or NONE_LABEL] += used
    return {"total": format_amount(total), **{f"by_{name}": _money_dict(values) for name, values in by.items()}}


def _breakage(rows: Sequence[JournalRow], grants: Mapping[str, GrantInfo]) -> tuple[list[dict[str, Any]], int, int]:
    per_grant: dict[str, int] = defaultdict(int)
    for row in rows:
        for account, grant_id, amount in row.entries:
            if account == "breakage":
                per_grant[grant_id or NONE_LABEL] += amount
    items = []
    total = cost = 0
    for grant_id in sorted(per_grant):
        amount = per_grant[grant_id]
        grant = grants.get(grant_id)
        basis = (divide_round_half_up(grant.cost_basis * amount, grant.amount)
                 if grant is not None and grant.amount else 0)
        total += amount
        cost += basis
        items.append({"grant_id": grant_id, "kind": grant.kind if grant else None,
                      "amount": format_amount(amount), "cost_basis": format_amount(basis),
                      "currency": grant.currency if grant else None})
    return items, total, cost


def _rollovers(rows: Sequence[JournalRow], grants: Mapping[str, GrantInfo]) -> tuple[int, int, list[dict[str, Any]]]:
    rolled_out = rolled_in = 0
    items = []
    for row in rows:
        for account, grant_id, amount in row.entries:
            if account != "rollover":
                continue
            if amount > 0:
                rolled_out += amount
                items.append({"direction": "out", "grant_id": grant_id, "amount": format_amount(amount)})
            else:
                rolled_in -= amount
                source = grants.get(row.ref or "")
                items.append({"direction": "in", "grant_id": row.ref,
                              "source_grant_id": source.source_grant_id if source else None,
                              "amount": format_amount(-amount)})
    return rolled_out, rolled_in, items


def check_arithmetic(body: Mapping[str, Any]) -> str | None:
    """Recompute every total from its parts; the first mismatch, or None. Used by verify too,
    so that a statement whose figures were edited and re-signed with a stolen key still has to
    add up, and a reader sees which figure is wrong."""
    try:
        def number(value: Any) -> int:
            return parse_amount(value, allow_negative=True)

        credits = body["credits_in"]
        usage = body["usage"]
        breakage = body["breakage"]
        parts = body["closing_parts"]
        checks = [
            ("credits_in.paid + credits_in.free = credits_in.total",
             number(credits["paid"]) + number(credits["free"]), number(credits["total"])),
            ("credits_in items = credits_in.total",
             sum(number(item["amount"]) for item in credits["items"]), number(credits["total"])),
            ("breakage items = breakage.total",
             sum(number(item["amount"]) for item in breakage["items"]), number(breakage["total"])),
            ("breakage item cost bases = breakage.cost_basis",
             sum(number(item["cost_basis"]) for item in breakage["items"]), number(breakage["cost_basis"])),
            ("closing parts = closing_balance",
             number(parts["grants"]) + number(parts["pending_holds"]) + number(parts["rollover_in_transit"])
             - number(parts["debt"]), number(body["closing_balance"])),
            ("pending_holds.closing = closing_parts.pending_holds",
             number(body["pending_holds"]["closing"]), number(parts["pending_holds"])),
            (BALANCE_EQUATION,
             number(body["opening_balance"]) + number(credits["total"]) - number(usage["total"])
             - number(breakage["total"]) - number(body["forfeited"]["total"]),
             number(body["closing_balance"])),
        ]
        for dimension in ("model", "project", "purpose", "scope"):
            checks.append((f"usage.by_{dimension} = usage.total",
                           sum(number(v) for v in usage[f"by_{dimension}"].values()), number(usage["total"])))
        rolls = body["rollovers"]["items"]
        for direction in ("out", "in"):
            checks.append((f"rollover items {direction} = rollovers.{direction}",
                           sum(number(i["amount"]) for i in rolls if i["direction"] == direction),
                           number(body["rollovers"][direction])))
    except (KeyError, TypeError, AttributeError, AmountError) as error:
        return f"the statement is incomplete or malformed ({error})"
    for name, computed, stated in checks:
        if computed != stated:
            return f"{name}: computed {format_amount(computed)}, stated {format_amount(stated)}"
    return None
