"""Property: over random grants, usage, holds and closes across random periods, the statements
partition the journal exactly (sum of statements == journal totals, each closing == the next
opening) and the ledger verifier passes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditgate.billing.service import Billing
from creditgate.bootstrap import Services, bootstrap
from creditgate.clock import ManualClock
from creditgate.errors import CreditgateError
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify
from tests.integration.billing.helpers import journal_totals, statement_sums, statements_in_order

HOUR_US = 3_600_000_000
POLICIES = [None, {"policy": "none"}, {"policy": "full"}, {"policy": "full", "roll_again": True},
            {"policy": "capped", "cap_amount": "7"}, {"policy": "capped", "cap_percent": "33.3"},
            {"policy": "capped", "cap_amount": "12", "cap_percent": "40", "expires_after_periods": 2}]

operation = st.one_of(
    st.tuples(st.just("grant"), st.integers(1, 60), st.sampled_from(["inference", "training", "any"]),
              st.integers(0, 3), st.sampled_from(range(len(POLICIES))), st.integers(1, 300)),
    st.tuples(st.just("debit"), st.integers(1, 40), st.sampled_from(["inference", "training"])),
    st.tuples(st.just("hold"), st.integers(1, 30), st.integers(0, 35), st.booleans()),
    st.tuples(st.just("wait"), st.integers(1, 200)),
    st.tuples(st.just("close"),),
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, ManualClock]]:
    clock = ManualClock()
    services = bootstrap(f"sqlite:///{tmp_path_factory.mktemp('prop')}/prop.db", clock=clock)
    yield services, clock
    services.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=5, max_size=40), length_days=st.integers(1, 4),
       overdraft=st.integers(0, 10))
def test_statements_partition_the_journal(world: tuple[Services, ManualClock], operations: list[tuple],
                                          length_days: int, overdraft: int) -> None:
    services, clock = world
    ledger = services.ledger
    billing: Billing = services.extras["billing"]
    org = ledger.create_org(f"prop-{clock.now_us()}-{len(operations)}", overdraft_limit=parse_amount(str(overdraft)))
    billing.set_cycle(org.id, kind="days", length_days=length_days, timezone="Europe/Paris")
    holds: list[str] = []
    for op in operations:
        try:
            _apply(op, org.id, services, billing, clock, holds)
        except CreditgateError:
            pass  # refused operations (insufficient credits, expired holds) change nothing
    # Finish exactly at a period end so that nothing is booked between the end and the close.
    period = billing.current_period(org.id)
    assert period is not None
    clock.set(period.end_us)
    billing.close_org(org.id)
    report = verify(services.database)
    assert report.ok, report.problems[:3]
    assert billing.reconcile(org.id) == []
    statements = statements_in_order(billing, org.id)
    for before, after in itertools.pairwise(statements):
        assert before["closing_balance"] == after["opening_balance"]
        assert before["period"]["end_us"] == after["period"]["start_us"]
    journal = journal_totals(ledger, org.id, through_seq=statements[-1]["journal"]["cut_seq"])
    sums = statement_sums(billing, org.id)
    assert sums.get("credits_in", 0) == -journal.get("issued", 0)
    assert sums.get("usage", 0) == journal.get("usage", 0)
    assert sums.get("breakage", 0) == journal.get("breakage", 0)
    balance = sum(journal.get(name, 0) for name in ("grants", "holds", "overdraft", "rollover"))
    assert parse_amount(statements[-1]["closing_balance"], allow_negative=True) == balance


def _apply(op: tuple, org_id: str, services: Services, billing: Billing, clock: ManualClock,
           holds: list[str]) -> None:
    ledger = services.ledger
    if op[0] == "grant":
        _, units, scope, expires_in, policy_index, cost = op
        period = billing.current_period(org_id)
        assert period is not None
        expires = None
        if expires_in:
            expires = period.end_us + (expires_in - 1) * (period.end_us - period.start_us)
        ledger.grant(org_id, parse_amount(str(units)), scope=scope, expires_at_us=expires,
                     cost_basis=parse_amount(str(cost)) // 100, rollover=POLICIES[policy_index],
                     priority=units % 3 * 50)
    elif op[0] == "debit":
        ledger.debit(org_id, parse_amount(str(op[1])) // 3, scope=op[2], ref=f"d{clock.now_us()}")
    elif op[0] == "hold":
        _, units, post, settle = op
        hold = ledger.reserve(org_id, parse_amount(str(units)), model=f"m{units % 3}", ttl_s=6 * 3600,
                              metadata={"project_id": f"p{units % 2}"})
        if settle:
            ledger.post(org_id, hold["hold_id"], min(parse_amount(str(post)), parse_amount(str(units))))
        else:
            holds.append(hold["hold_id"])
    elif op[0] == "wait":
        clock.advance(micros=op[1] * HOUR_US // 4)
    else:
        billing.close_org(org_id)
