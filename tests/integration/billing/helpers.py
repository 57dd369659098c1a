"""Shared helpers for the billing integration tests."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from creditgate.billing.service import Billing
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.service import Ledger


def credits(text: str) -> int:
    return parse_amount(text)


def journal_totals(ledger: Ledger, org_id: str, *, through_seq: int) -> dict[str, int]:
    """Sum of the journal's entries by account class up to ``through_seq``, read independently of
    the statement code."""
    totals: dict[str, int] = defaultdict(int)
    after = 0
    while True:
        page = ledger.journal_page(org_id, after_seq=after, limit=1000)
        for tx in page:
            if tx["seq"] > through_seq:
                return dict(totals)
            for entry in tx["entries"]:
                account = entry["account"]
                name = account.split(":", 1)[0] + ("s" if account.startswith(("grant:", "hold:")) else "")
                totals[name] += entry["amount"]
        if len(page) < 1000:
            return dict(totals)
        after = page[-1]["seq"]


def statement_sums(billing: Billing, org_id: str) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for item in reversed(billing.list_statements(org_id, limit=1000)):
        body = billing.statement(org_id, item["id"])["statement"]
        sums["credits_in"] += parse_amount(body["credits_in"]["total"], allow_negative=True)
        sums["usage"] += parse_amount(body["usage"]["total"], allow_negative=True)
        sums["breakage"] += parse_amount(body["breakage"]["total"], allow_negative=True)
        sums["forfeited"] += parse_amount(body["forfeited"]["total"], allow_negative=True)
        sums["rolled_out"] += parse_amount(body["rollovers"]["out"], allow_negative=True)
        sums["rolled_in"] += parse_amount(body["rollovers"]["in"], allow_negative=True)
    return dict(sums)


def statements_in_order(billing: Billing, org_id: str) -> list[dict[str, Any]]:
    return [billing.statement(org_id, item["id"])["statement"]
            for item in reversed(billing.list_statements(org_id, limit=1000))]
