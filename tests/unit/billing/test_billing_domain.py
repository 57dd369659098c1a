"""Pure billing rules: periods, rollover caps, late usage, statement arithmetic and signatures."""

from __future__ import annotations

import copy
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from creditgate.billing.late_usage import LateUsagePolicy, decide_late_usage
from creditgate.billing.periods import CycleSpec, period_at, period_containing, periods_ended_by
from creditgate.billing.rollover import next_policy, parse_policy, rolled_amount
from creditgate.billing.signing import generate_key, sign, verify_document
from creditgate.billing.statements import (
    GrantInfo,
    JournalRow,
    PeriodCut,
    StatementInputs,
    build,
    select_rows,
)
from creditgate.clock import to_us
from creditgate.errors import InvalidInput
from creditgate.ledger.credits import parse_amount

C = parse_amount
PARIS = ZoneInfo("Europe/Paris")


def test_monthly_anchor_clamps_to_short_months_at_local_midnight() -> None:
    spec = CycleSpec(kind="monthly", timezone="Europe/Paris", origin_us=to_us(datetime(2026, 1, 31, 9, tzinfo=PARIS)),
                     anchor_day=31)
    starts = [period_at(spec, index).start_us for index in range(4)]
    assert starts == [to_us(datetime(2026, m, d, tzinfo=PARIS)) for m, d in ((1, 31), (2, 28), (3, 31), (4, 30))]
    # The March period spans the DST change: 31 days minus one hour.
    march = period_at(spec, 1)
    assert march.end_us - march.start_us == (31 * 24 - 1) * 3_600_000_000


def test_origin_before_the_anchor_starts_in_the_previous_month() -> None:
    spec = CycleSpec(kind="monthly", timezone="UTC", origin_us=to_us(datetime(2026, 3, 5, tzinfo=PARIS)), anchor_day=15)
    first = period_at(spec, 0)
    assert first.start_us == to_us(datetime(2026, 2, 15, tzinfo=ZoneInfo("UTC")))


@given(kind=st.sampled_from(["monthly", "days"]), anchor=st.integers(1, 31), length=st.integers(1, 45),
       zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]),
       offset_days=st.integers(0, 2000), seconds=st.integers(0, 86_399))
@settings(max_examples=200, deadline=None)
def test_periods_tile_time_without_gaps(kind: str, anchor: int, length: int, zone: str, offset_days: int,
                                        seconds: int) -> None:
    spec = CycleSpec(kind=kind, timezone=zone, origin_us=1_767_225_600_000_000, anchor_day=anchor,
                     length_days=length)
    instant = spec.origin_us + (offset_days * 86_400 + seconds) * 1_000_000
    period = period_containing(spec, instant)
    assert period is not None and period.start_us <= instant < period.end_us
    assert period_at(spec, period.index + 1).start_us == period.end_us
    if period.index:
        assert period_at(spec, period.index - 1).end_us == period.start_us


def test_periods_ended_by_is_bounded_and_ordered() -> None:
    spec = CycleSpec(kind="days", timezone="UTC", origin_us=0, length_days=1)
    found = periods_ended_by(spec, 10 * 86_400_000_000, after_index=2, count_max=4)
    assert [p.index for p in found] == [3, 4, 5, 6]


@pytest.mark.parametrize(("policy", "amount", "free", "expected"), [
    ({"policy": "none"}, "100", "60", "0"),
    ({"policy": "full"}, "100", "60", "60"),
    ({"policy": "capped", "cap_amount": "25"}, "100", "60", "25"),
    ({"policy": "capped", "cap_percent": "10"}, "100", "60", "10"),
    ({"policy": "capped", "cap_amount": "5", "cap_percent": "10"}, "100", "60", "5"),
    ({"policy": "capped", "cap_percent": "12.5"}, "0.000003", "0.000003", "0"),  # 0.375 micro rounds to 0
    ({"policy": "capped", "cap_percent": "50"}, "0.000003", "0.000003", "0.000002"),  # 1.5 micro rounds up
    ({"kind": "capped_percent", "cap_percent": "20"}, "100", "60", "20"),  # the pricing bundles' form
    ({"kind": "capped_amount", "cap_credits": "7"}, "100", "60", "7"),
])
def test_rollover_caps(policy: dict[str, str], amount: str, free: str, expected: str) -> None:
    assert rolled_amount(parse_policy(policy), C(amount), C(free)) == C(expected)


@pytest.mark.parametrize("bad", [
    {"policy": "capped", "cap_percent": "100.01"}, {"policy": "capped"}, {"policy": "full", "cap_amount": "1"},
    {"policy": "sometimes"}, {"policy": "full", "expires_after_periods": 0}, {"policy": "full", "color": "red"},
    "not json", [1],
])
def test_bad_rollover_policies_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        parse_policy(bad)  # type: ignore[arg-type]


def test_rollover_grants_do_not_roll_again_unless_told() -> None:
    assert next_policy(parse_policy({"policy": "full"})).policy == "none"
    assert next_policy(parse_policy({"policy": "full", "roll_again": True})).policy == "full"


@pytest.mark.parametrize(("event_day", "now_day", "after_grace", "reason", "accept"), [
    (11, 12, "reject", "on_time", True),
    (9, 11, "reject", "late_in_grace", True),
    (9, 14, "reject", "late_rejected", False),
    (9, 14, "book_current", "late_booked", True),
    (15, 12, "reject", "future", False),
])
def test_late_usage_policy(event_day: int, now_day: int, after_grace: str, reason: str, accept: bool) -> None:
    day = 86_400_000_000
    decision = decide_late_usage(event_day * day, now_day * day, 10 * day,
                                 LateUsagePolicy(grace_s=2 * 86_400, after_grace=after_grace))
    assert (decision.reason, decision.accept) == (reason, accept)


def _row(seq: int, kind: str, at: int, entries: list[tuple[str, str | None, int]], ref: str | None = None,
         **result: object) -> JournalRow:
    return JournalRow(seq=seq, kind=kind, at_us=at, ref=ref, result=result, entries=tuple(entries))


def test_effective_time_moves_expiry_into_its_period_and_late_bookings_out() -> None:
    grants = {"g": GrantInfo("g", "purchase", "any", 10, 0, "USD", expires_at_us=100)}
    rows = [
        _row(1, "grant", 5, [("issued", None, -10), ("grant:g", None, 10)], ref="g"),
        _row(2, "debit", 101, [("grant:g", "g", -1), ("usage", "g", 1)]),  # after the end: next period
        _row(3, "grant_expire", 102, [("grant:g", "g", -9), ("breakage", "g", 9)], ref="g"),
        _row(4, "period_close", 103, [], effective_at_us=99),
    ]
    chosen, next_low = select_rows(rows, None, PeriodCut(end_us=100, cut_seq=4), grants)
    assert [row.seq for row in chosen] == [1, 3, 4] and next_low == 2
    later, _ = select_rows([rows[1]], PeriodCut(100, 4), PeriodCut(200, 9), grants)
    assert [row.seq for row in later] == [2]


def _statement() -> dict[str, object]:
    grants = {"g": GrantInfo("g", "purchase", "any", 10_000_000, 2_000_000, "USD", None)}
    rows = [_row(1, "grant", 1, [("issued", None, -10_000_000), ("grant:g", None, 10_000_000)], ref="g"),
            _row(2, "debit", 2, [("grant:g", "g", -2_500_000), ("usage", "g", 2_500_000)], ref="x")]
    body, closing, _ = build(StatementInputs(
        org_id="org", org_name="Org", statement_id="stm", period_index=0, period_start_us=0,
        period_end_us=10, period_label="p", timezone="UTC", cut_seq=2, previous=None,
        opening_totals={}, rows=rows, grants=grants, usage_sources={}))
    assert closing["grants"] == 7_500_000 and body["closing_balance"] == "7.5"
    return body


def test_a_signed_statement_verifies_and_any_changed_figure_fails() -> None:
    key = generate_key()
    document = sign(_statement(), key)
    assert verify_document(document).ok
    assert verify_document(document, trusted_public_keys=(key.public_b64,)).ok
    assert not verify_document(document, trusted_public_keys=(generate_key().public_b64,)).ok
    for path in (("closing_balance",), ("usage", "total"), ("credits_in", "paid"), ("opening_balance",)):
        changed = copy.deepcopy(document)
        target = changed["statement"]
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = "7.6"
        assert not verify_document(changed).ok, path
    # Re-signed with another key after an edit: the signature is fine, the figures are not.
    edited = copy.deepcopy(document["statement"])
    edited["usage"]["total"] = "2.6"
    result = verify_document(sign(edited, generate_key()))
    assert not result.ok and "add up" in result.reason
