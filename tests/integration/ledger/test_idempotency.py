"""Idempotency keys: the same key with the same inputs replays and writes nothing; the same key
with different inputs is an IdempotencyConflict. Retries come a little later, as real ones do."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from creditgate.clock import ManualClock
from creditgate.errors import IdempotencyConflict
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database

from .helpers import c, snapshot, without_replayed

RETRY_DELAY_S = 2


@pytest.fixture
def org_id(ledger: Ledger) -> str:
    org = ledger.create_org("acme", overdraft_limit=c("5"))
    ledger.grant(org.id, c("100"))
    return org.id


def check_idempotent(database: Database, clock: ManualClock, call: Callable[..., dict[str, Any]],
                     same: dict[str, Any], different: dict[str, Any]) -> dict[str, Any]:
    first = call(**same)
    before = snapshot(database)
    clock.advance(seconds=RETRY_DELAY_S)
    again = call(**same)
    assert without_replayed(again) == without_replayed(first)
    assert snapshot(database) == before, "a replay wrote something"
    with pytest.raises(IdempotencyConflict) as raised:
        call(**different)
    assert raised.value.param == "idempotency_key"
    assert snapshot(database) == before, "a conflicting call wrote something"
    return first


def test_grant(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    # No explicit effective_at: the grant starts "now", which is later on the retry. A retry
    # with the same inputs must still replay, not conflict.
    check_idempotent(database, clock, lambda **kw: ledger.grant(org_id, idempotency_key="g-1", **kw),
                     {"amount": c("10"), "kind": "trial"}, {"amount": c("11"), "kind": "trial"})


def test_grant_with_explicit_times(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    start = clock.now_us()
    check_idempotent(database, clock, lambda **kw: ledger.grant(org_id, idempotency_key="g-2", **kw),
                     {"amount": c("10"), "effective_at_us": start, "expires_at_us": start + 10**9},
                     {"amount": c("10"), "effective_at_us": start, "expires_at_us": start + 2 * 10**9})


def test_reserve(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    first = check_idempotent(database, clock, lambda **kw: ledger.reserve(org_id, idempotency_key="r-1", **kw),
                             {"amount": c("3"), "ttl_s": 600}, {"amount": c("3"), "ttl_s": 601})
    assert ledger.get_hold(org_id, first["hold_id"]).status == "pending"
    assert ledger.balance(org_id).pending == c("3")


def test_post(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    hold_id = ledger.reserve(org_id, c("3"))["hold_id"]
    check_idempotent(database, clock, lambda **kw: ledger.post(org_id, hold_id, idempotency_key="p-1", **kw),
                     {"actual": c("2")}, {"actual": c("1")})
    assert ledger.get_hold(org_id, hold_id).posted == c("2")


def test_void(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    hold_id = ledger.reserve(org_id, c("3"))["hold_id"]
    other = ledger.reserve(org_id, c("1"))["hold_id"]
    check_idempotent(database, clock, lambda **kw: ledger.void(org_id, idempotency_key="v-1", **kw),
                     {"hold_id": hold_id}, {"hold_id": other})
    assert ledger.get_hold(org_id, other).status == "pending"


def test_debit(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    check_idempotent(database, clock, lambda **kw: ledger.debit(org_id, idempotency_key="d-1", **kw),
                     {"amount": c("4"), "ref": "req-1"}, {"amount": c("4"), "ref": "req-2"})
    assert ledger.balance(org_id).available == c("96")


def test_void_grant(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    first = ledger.grant(org_id, c("10"))["grant_id"]
    second = ledger.grant(org_id, c("10"))["grant_id"]
    check_idempotent(database, clock, lambda **kw: ledger.void_grant(org_id, idempotency_key="vg-1", **kw),
                     {"grant_id": first}, {"grant_id": second})
    assert ledger.get_grant(org_id, second).status == "active"


def test_create_org(ledger: Ledger, database: Database, clock: ManualClock) -> None:
    first = ledger.create_org("beta", idempotency_key="o-1")
    before = snapshot(database)
    clock.advance(seconds=RETRY_DELAY_S)
    assert ledger.create_org("beta", idempotency_key="o-1") == first
    assert snapshot(database) == before
    with pytest.raises(IdempotencyConflict):
        ledger.create_org("gamma", idempotency_key="o-1")
    with pytest.raises(IdempotencyConflict):
        ledger.create_org("beta", overdraft_limit=c("1"), idempotency_key="o-1")
    assert snapshot(database) == before


def test_create_project(ledger: Ledger, database: Database, clock: ManualClock, org_id: str) -> None:
    check_idempotent(database, clock, lambda **kw: ledger.create_project(org_id, idempotency_key="pr-1", **kw),
                     {"name": "chatbot"}, {"name": "search"})


def test_a_key_used_for_one_kind_of_operation_conflicts_with_another(ledger: Ledger, org_id: str) -> None:
    ledger.debit(org_id, c("1"), idempotency_key="shared")
    with pytest.raises(IdempotencyConflict):
        ledger.reserve(org_id, c("1"), idempotency_key="shared")


def test_keys_are_per_organization(ledger: Ledger, org_id: str) -> None:
    other = ledger.create_org("other").id
    ledger.grant(other, c("10"))
    first = ledger.debit(org_id, c("1"), idempotency_key="k")
    second = ledger.debit(other, c("2"), idempotency_key="k")
    assert "replayed" not in second and first["debited"] != second["debited"]


def test_a_refused_operation_does_not_burn_its_key(ledger: Ledger, org_id: str) -> None:
    with pytest.raises(Exception, match="insufficient credits"):
        ledger.debit(org_id, c("1000"), idempotency_key="big")
    ledger.grant(org_id, c("1000"))
    assert "replayed" not in ledger.debit(org_id, c("1000"), idempotency_key="big")


def test_the_same_key_twice_in_one_batch_applies_once(ledger: Ledger, org_id: str) -> None:
    operations = [ledger.reserve_operation(org_id, c("1"), idempotency_key="burst") for _ in range(20)]

    async def burst() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(ledger.execute_async(op) for op in operations)))

    results = asyncio.run(burst())
    assert len({result["hold_id"] for result in results}) == 1
    assert ledger.balance(org_id).pending == c("1")
