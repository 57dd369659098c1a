"""Inputs SQLite would store and PostgreSQL would refuse with a raw driver error (NUL in text, an
over-long timezone), an unknown timezone, and a journal cursor past BIGINT: each is InvalidInput
naming the field, on both backends, and nothing is written."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from creditgate.errors import InvalidInput
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database

from .helpers import c, snapshot


@pytest.fixture
def org(ledger: Ledger) -> str:
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("100"))
    return org_id


@pytest.mark.parametrize(("call", "field"), [
    (lambda ledger, org: ledger.reserve(org, c("1"), model="gpt\x00x"), "model"),
    (lambda ledger, org: ledger.debit(org, c("1"), ref="ref\x00x"), "ref"),
    (lambda ledger, org: ledger.debit(org, c("1"), ref="r\x00", idempotency_key="k"), "ref"),
    (lambda ledger, org: ledger.create_org("tz-long", timezone="X" * 100), "timezone"),
    (lambda ledger, org: ledger.create_org("tz-unknown", timezone="Not/AZone"), "timezone"),
    (lambda ledger, org: ledger.create_org("tz-empty", timezone=""), "timezone"),
])
def test_refused_alike_on_both_backends(ledger: Ledger, database: Database, org: str,
                                        call: Callable[[Ledger, str], object], field: str) -> None:
    before = snapshot(database)
    with pytest.raises(InvalidInput) as raised:
        call(ledger, org)
    assert raised.value.param == field
    assert field in raised.value.message
    assert snapshot(database) == before


def test_text_and_timezones_that_are_fine_still_pass(ledger: Ledger, org: str) -> None:
    assert ledger.reserve(org, c("1"), model="llama-3-8b")["amount"] == c("1")
    assert ledger.debit(org, c("1"), ref="x" * 80)["debited"] == c("1")
    assert ledger.create_org("paris", timezone="Europe/Paris").name == "paris"


@pytest.mark.parametrize("after_seq", [2**63, 10**20, -1])
def test_a_journal_cursor_out_of_range_is_refused(ledger: Ledger, org: str, after_seq: int) -> None:
    with pytest.raises(InvalidInput) as raised:
        ledger.journal_page(org, after_seq=after_seq)
    assert raised.value.param == "after_seq"


def test_the_largest_journal_cursor_finds_nothing(ledger: Ledger, org: str) -> None:
    assert ledger.journal_page(org, after_seq=2**63 - 1) == []
    assert [row["seq"] for row in ledger.journal_page(org, after_seq=0)] == [1]
