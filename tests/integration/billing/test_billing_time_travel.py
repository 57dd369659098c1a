"""Time travel across 7 monthly periods with mixed grants: expiring and never-expiring,
prioritized, scoped, allow-listed, rolling over with caps. After every close: the ledger
verifier passes, every cap is exact, and the statements add up to the journal."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from creditgate.billing.periods import period_at
from creditgate.billing.service import Billing
from creditgate.clock import ManualClock, to_us
from creditgate.ledger.credits import divide_round_half_up, parse_amount
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from tests.integration.billing.helpers import (
    credits,
    journal_totals,
    statement_sums,
    statements_in_order,
)

PERIODS = 7
MINUTE_US = 60 * 1_000_000


@pytest.fixture
def billing(database: Database, ledger: Ledger, clock: ManualClock) -> Billing:
    return Billing(database, ledger, clock)


def _expected_rollover(grant, policy: dict) -> int:  # type: ignore[no-untyped-def]
    """Independent arithmetic for the caps used in this test."""
    free = grant.remaining - grant.held
    if policy["policy"] == "none":
        return 0
    if policy["policy"] == "full":
        return free
    caps = [free]
    if "cap_amount" in policy:
        caps.append(parse_amount(policy["cap_amount"]))
    if "cap_percent" in policy:
        caps.append(divide_round_half_up(grant.amount * parse_amount(policy["cap_percent"]), 100_000_000))
    return min(caps)


def test_seven_periods_of_mixed_grants(billing: Billing, ledger: Ledger, clock: ManualClock,
                                       database: Database) -> None:
    tz = ZoneInfo("America/New_York")
    clock.set(to_us(datetime(2026, 1, 31, 12, tzinfo=tz)))
    org = ledger.create_org("time-travel", overdraft_limit=credits("5"))
    # Anchor on the 31st: shorter months start their period on their last day, at local midnight.
    billing.set_cycle(org.id, kind="monthly", anchor_day=31, timezone="America/New_York")
    spec = billing.cycle(org.id).spec
    periods = [period_at(spec, index) for index in range(PERIODS)]
    assert periods[0].start_us == to_us(datetime(2026, 1, 31, tzinfo=tz))
    assert periods[1].start_us == to_us(datetime(2026, 2, 28, tzinfo=tz))
    assert periods[2].start_us == to_us(datetime(2026, 3, 31, tzinfo=tz))  # after the DST change

    ledger.grant(org.id, credits("1000"), priority=500, cost_basis=credits("100"))  # never expires, used last
    ledger.grant(org.id, credits("200"), scope="training", priority=100)
    ledger.grant(org.id, credits("50"), kind="promotional", priority=50, expires_at_us=periods[1].end_us)
    ledger.grant(org.id, credits("300"), priority=150, cost_basis=credits("30"), expires_at_us=periods[2].end_us,
                 rollover={"policy": "full", "roll_again": True, "expires_after_periods": 2})
    ledger.grant(org.id, credits("40"), priority=10, allow=["m-small"], expires_at_us=periods[0].end_us,
                 rollover={"policy": "capped", "cap_percent": "50"})
    billing.allowances.create(org.id, "plan", credits("100"), priority=20,
                              rollover={"policy": "capped", "cap_amount": "30", "cap_percent": "25.5"})
    billing.allowances.create(org.id, "training-plan", credits("10"), scope="training", priority=20,
                              rollover={"policy": "capped", "cap_amount": "3"})

    expected_rolls: dict[str, int] = {}
    for index, period in enumerate(periods):
        # Usage inside the period: holds with a model/project/purpose, plain debits, training.
        for step in range(3):
            clock.set(period.start_us + (step + 1) * 86_400_000_000)
            hold = ledger.reserve(org.id, credits("30"), model="m-small" if step % 2 else "m-large",
                                  subjects=("m-small",) if step % 2 else ("m-large",),
                                  metadata={"project_id": f"p{step}", "purpose": "chat"})
            ledger.post(org.id, hold["hold_id"], credits(str(7 + index + step)))
            ledger.debit(org.id, credits("3.333333"), ref=f"batch-{index}-{step}")
            ledger.debit(org.id, credits("2"), scope="training", ref=f"train-{index}-{step}")
        clock.set(period.end_us - 3_600_000_000)
        pending = ledger.reserve(org.id, credits("4"), ttl_s=86_400)  # still pending at the close
        # Expected rollovers from what is free right before the close (nothing moves in between).
        clock.set(period.end_us + MINUTE_US)
        for grant in ledger.list_grants(org.id, include_closed=False):
            if grant.expires_at_us is not None and grant.expires_at_us <= period.end_us and grant.rollover:
                import orjson
                amount = _expected_rollover(grant, orjson.loads(grant.rollover))
                if amount:
                    expected_rolls[grant.id] = amount
        outcomes = billing.close_org(org.id)
        assert [outcome.period.index for outcome in outcomes] == [index]
        for origin_id, amount in outcomes[0].rolled:
            assert expected_rolls.pop(origin_id) == amount, "cap not honoured exactly"
        rollover_grants = {g.source_grant_id: g for g in ledger.list_grants(org.id) if g.kind == "rollover"}
        for origin_id, amount in outcomes[0].rolled:
            assert rollover_grants[origin_id].amount == amount
        assert not expected_rolls, f"grants that should have rolled over did not: {expected_rolls}"
        report = verify(database)
        assert report.ok, report.problems
        assert billing.reconcile(org.id) == []
        ledger.void(org.id, pending["hold_id"])

    statements = statements_in_order(billing, org.id)
    assert len(statements) == PERIODS
    for before, after in itertools.pairwise(statements):
        assert before["closing_balance"] == after["opening_balance"]
    last_cut = statements[-1]["journal"]["cut_seq"]
    journal = journal_totals(ledger, org.id, through_seq=last_cut)
    sums = statement_sums(billing, org.id)
    assert sums["credits_in"] == -journal["issued"]
    assert sums["usage"] == journal["usage"]
    assert sums["breakage"] == journal["breakage"]
    assert sums["forfeited"] == journal.get("forfeit", 0)
    balance = (journal.get("grants", 0) + journal.get("holds", 0) + journal.get("overdraft", 0)
               + journal.get("rollover", 0))
    assert parse_amount(statements[-1]["closing_balance"], allow_negative=True) == balance
    # Every credit rolled out of a period was rolled into the next one.
    assert sums["rolled_out"] - parse_amount(statements[-1]["rollovers"]["out"]) == sums["rolled_in"]
    usage = statements[0]["usage"]
    assert set(usage["by_project"]) >= {"p0", "p1", "p2"} and "training" not in usage["by_purpose"]


def test_close_is_idempotent_and_usage_after_the_end_goes_to_the_next_period(
        billing: Billing, ledger: Ledger, clock: ManualClock, database: Database) -> None:
    org = ledger.create_org("idempotent")
    billing.set_cycle(org.id, kind="days", length_days=10, timezone="UTC")
    period = billing.current_period(org.id)
    assert period is not None
    ledger.grant(org.id, credits("100"), expires_at_us=period.end_us,
                 rollover={"policy": "capped", "cap_amount": "10"})
    ledger.grant(org.id, credits("100"))
    clock.set(period.end_us + MINUTE_US)
    ledger.debit(org.id, credits("5"), ref="after-the-end")  # after the end, before the close
    first = billing.close_org(org.id)
    again = billing.close_org(org.id)  # nothing left to close
    assert len(first) == 1 and again == []
    # Replaying the same period's close books nothing twice.
    from creditgate.billing.close import close_one
    replay = close_one(billing, billing.cycle(org.id), period)
    assert replay.replayed and replay.statement_id == first[0].statement_id
    statement = billing.statement(org.id, first[0].statement_id)["statement"]
    assert statement["usage"]["total"] == "0"
    assert statement["rollovers"]["out"] == "10" and statement["breakage"]["total"] == "90"
    clock.set(period.end_us + 10 * 86_400_000_000 + MINUTE_US)
    second = billing.close_org(org.id)
    statement = billing.statement(org.id, second[0].statement_id)["statement"]
    assert statement["usage"]["total"] == "5" and statement["rollovers"]["in"] == "10"
    assert verify(database).ok and billing.reconcile(org.id) == []


def test_rollover_survives_an_earlier_generic_expiry(billing: Billing, ledger: Ledger, clock: ManualClock,
                                                     database: Database) -> None:
    """Ledger.expire_due (run by something else) expires a grant before the close: the close
    takes its rolled part back out of breakage, exactly."""
    org = ledger.create_org("early-expiry")
    billing.set_cycle(org.id, kind="days", length_days=7, timezone="UTC")
    period = billing.current_period(org.id)
    assert period is not None
    grant = ledger.grant(org.id, credits("80"), expires_at_us=period.end_us,
                         rollover={"policy": "capped", "cap_percent": "25"})
    ledger.debit(org.id, credits("30"))
    clock.set(period.end_us + MINUTE_US)
    assert ledger.expire_due(org.id) == 1
    outcome = billing.close_org(org.id)[0]
    assert outcome.rolled == ((grant["grant_id"], credits("20")),)
    statement = billing.statement(org.id, outcome.statement_id)["statement"]
    assert statement["breakage"]["total"] == "30" and statement["closing_balance"] == "20"
    assert verify(database).ok and billing.reconcile(org.id) == []


def test_close_due_takes_a_lease_and_a_future_period_is_refused(billing: Billing, ledger: Ledger,
                                                                clock: ManualClock) -> None:
    from creditgate.billing.lease import Lease
    from creditgate.errors import InvalidInput

    org = ledger.create_org("leased")
    billing.set_cycle(org.id, kind="days", length_days=1, timezone="UTC")
    clock.advance(days=3)
    other = Lease(billing.database, clock, "billing-close", holder="other-process")
    assert other.acquire()
    assert billing.close_due().skipped_lease
    clock.advance(seconds=301)  # the other holder's lease expired
    report = billing.close_due()
    assert not report.skipped_lease and len(report.closed) == 3
    future = billing.current_period(org.id)
    assert future is not None
    with pytest.raises(InvalidInput):
        billing.close_org(org.id, through_start_us=future.start_us)


def test_scheduler_closes_due_periods_by_the_injected_clock(billing: Billing, ledger: Ledger,
                                                            clock: ManualClock) -> None:
    from creditgate.billing.scheduler import BillingScheduler

    org = ledger.create_org("scheduled")
    billing.set_cycle(org.id, kind="days", length_days=2, timezone="UTC")
    scheduler = BillingScheduler(billing, interval_s=3600)
    assert scheduler.run_once().closed == []  # nothing is due yet
    clock.advance(days=4)
    scheduler.start()  # the first run happens at once, then every interval
    scheduler.close()
    assert scheduler.runs >= 1
    assert len(billing.list_statements(org.id)) == 2
