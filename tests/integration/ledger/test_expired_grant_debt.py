"""Debt is paid by a grant that is live when it is booked. One booked already expired (a billing
close catching up on past periods books such grants, so it is not refused) pays nothing: its
credits can never be used, and paying with them would turn the debt into breakage."""

from __future__ import annotations

from creditgate.clock import ManualClock
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

from .helpers import c

DAY_US = 86_400 * 10**6


def test_a_grant_expired_when_booked_pays_no_debt(ledger: Ledger, database: Database, clock: ManualClock) -> None:
    org = ledger.create_org("acme", overdraft_limit=c("5")).id
    ledger.debit(org, c("5"))
    now = clock.now_us()
    result = ledger.grant(org, c("10"), effective_at_us=now - 2 * DAY_US, expires_at_us=now - DAY_US)
    assert result["debt_paid"] == 0
    assert ledger.get_org(org).debt_inference == c("5")
    assert ledger.get_grant(org, result["grant_id"]).remaining == c("10")
    assert ledger.expire_due(org) == 1
    assert ledger.journal_page(org)[-1]["result"]["lost"] == c("10")
    # The debt is still there for the next live grant to pay.
    assert ledger.grant(org, c("10"))["debt_paid"] == c("5")
    assert ledger.get_org(org).debt_inference == 0
    report = verify(database)
    assert report.ok, report.problems


def test_a_live_backdated_grant_still_pays_debt(ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("acme", overdraft_limit=c("5")).id
    ledger.debit(org, c("5"))
    now = clock.now_us()
    result = ledger.grant(org, c("10"), effective_at_us=now - DAY_US, expires_at_us=now + DAY_US)
    assert result["debt_paid"] == c("5")
    assert ledger.get_org(org).debt_inference == 0
