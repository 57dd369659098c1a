"""A hypothesis state machine drives the real Ledger (SQLite file, PostgreSQL) with random grants,
reserves, posts, voids, debits, expiries and clock advances, and checks it against a tiny
in-memory reference model after every step.

The model is deliberately naive: lists of grants and holds, a sort for the burn-down order, and
arithmetic on plain ints. It also predicts which grants pay for what, so the burn-down order is
checked on every reserve, post and debit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text

from creditgate.clock import ManualClock
from creditgate.errors import HoldNotPending, InsufficientCredits, InvalidInput, NotFound
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

SECOND = 1_000_000
OVERDRAFT = 5 * SECOND  # 5 credits in micro-units (one credit is 10^6, like a second here)
amounts = st.integers(min_value=1, max_value=40).map(lambda units: units * 250_000)  # 0.25 .. 10 credits


@dataclass
class ModelGrant:
    id: str
    amount: int
    scope: str
    priority: int
    expires_at: int | None
    created_at: int
    remaining: int
    held: int = 0
    status: str = "active"

    def live(self, now: int) -> bool:
        return self.status == "active" and (self.expires_at is None or now < self.expires_at)

    def order(self) -> tuple[int, int, int, int, str]:
        return (self.priority, self.expires_at is None, self.expires_at or 0, self.created_at, self.id)


@dataclass
class ModelHold:
    id: str
    amount: int
    expires_at: int
    legs: list[tuple[str, int]]
    status: str = "pending"


@dataclass
class Model:
    grants: dict[str, ModelGrant] = field(default_factory=dict)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    debt: dict[str, int] = field(default_factory=lambda: {"inference": 0, "training": 0})
    granted: int = 0
    used: int = 0  # posted plus debited, overage included

    def eligible(self, scope: str, now: int) -> list[ModelGrant]:
        found = [g for g in self.grants.values()
                 if g.live(now) and g.scope in (scope, "any") and g.remaining - g.held > 0]
        return sorted(found, key=ModelGrant.order)

    def available(self, scope: str, now: int) -> int:
        return sum(g.remaining - g.held for g in self.eligible(scope, now)) - self.debt[scope]

    def release(self, hold: ModelHold, actual: int, status: str) -> list[list[object]]:
        paid: list[list[object]] = []
        for grant_id, leg in hold.legs:
            grant = self.grants[grant_id]
            consume = min(leg, actual)
            actual -= consume
            grant.held -= leg
            grant.remaining -= consume
            if grant.status != "active":  # released credits of a closed grant are lost
                grant.remaining -= leg - consume
            if consume:
                paid.append([grant_id, consume])
        hold.status = status
        return paid

    def expire_holds(self, now: int) -> None:
        for hold in self.holds.values():
            if hold.status == "pending" and hold.expires_at <= now:
                self.release(hold, 0, "expired")


class LedgerMachine(RuleBasedStateMachine):
    ledger: Ledger
    database: Database
    clock: ManualClock

    holds = Bundle("holds")
    grants = Bundle("grants")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        # A fresh name per run: id(self) is reused once a finished machine is freed.
        self.org = self.ledger.create_org(f"org-{secrets.token_hex(8)}", overdraft_limit=OVERDRAFT).id

    @property
    def now(self) -> int:
        return self.clock.now_us()

    # ------------------------------------------------------------------ rules
    @rule(target=grants, amount=amounts, scope=st.sampled_from(["any", "any", "inference", "training"]),
          priority=st.sampled_from([0, 10, 10, 100]), lifetime_s=st.none() | st.integers(1, 120))
    def grant(self, amount: int, scope: str, priority: int, lifetime_s: int | None) -> str:
        expires = None if lifetime_s is None else self.now + lifetime_s * SECOND
        self.model.expire_holds(self.now)
        result = self.ledger.grant(self.org, amount, scope=scope, priority=priority, expires_at_us=expires)
        grant = ModelGrant(result["grant_id"], amount, scope, priority, expires, self.now, amount)
        self.model.grants[grant.id] = grant
        self.model.granted += amount
        paid = 0
        for debt_scope in ("inference", "training"):
            if scope in ("any", debt_scope):
                pay = min(self.model.debt[debt_scope], grant.remaining)
                grant.remaining -= pay
                self.model.debt[debt_scope] -= pay
                paid += pay
        assert result["debt_paid"] == paid
        return grant.id

    @rule(target=holds, amount=amounts, scope=st.sampled_from(["inference", "training"]),
          ttl_s=st.integers(1, 90))
    def reserve(self, amount: int, scope: str, ttl_s: int) -> str:
        self.model.expire_holds(self.now)
        expected_ok = self.model.available(scope, self.now) >= amount
        try:
            result = self.ledger.reserve(self.org, amount, scope=scope, ttl_s=ttl_s)
        except InsufficientCredits:
            assert not expected_ok, "refused although the model has the credits"
            return "hld_refused"
        assert expected_ok, "reserved although the model lacks the credits"
        legs: list[tuple[str, int]] = []
        needed = amount
        for grant in self.model.eligible(scope, self.now):
            take = min(grant.remaining - grant.held, needed)
            grant.held += take
            legs.append((grant.id, take))
            needed -= take
            if not needed:
                break
        assert [tuple(leg) for leg in result["legs"]] == legs
        self.model.holds[result["hold_id"]] = ModelHold(result["hold_id"], amount, self.now + ttl_s * SECOND, legs)
        return str(result["hold_id"])

    @rule(hold_id=holds, share=st.integers(0, 4))
    def post(self, hold_id: str, share: int) -> None:
        self.model.expire_holds(self.now)
        hold = self.model.holds.get(hold_id)
        actual = 0 if hold is None else hold.amount * share // 4
        try:
            result = self.ledger.post(self.org, hold_id, actual)
        except (HoldNotPending, NotFound) as error:
            assert hold is None or hold.status != "pending", error
            return
        assert hold is not None and hold.status == "pending"
        assert result["paid"] == self.model.release(hold, actual, "posted")
        self.model.used += actual

    @rule(hold_id=holds)
    def void(self, hold_id: str) -> None:
        self.model.expire_holds(self.now)
        hold = self.model.holds.get(hold_id)
        try:
            self.ledger.void(self.org, hold_id)
        except (HoldNotPending, NotFound) as error:
            assert hold is None or hold.status != "pending", error
            return
        assert hold is not None and hold.status == "pending"
        self.model.release(hold, 0, "voided")

    @rule(amount=amounts, scope=st.sampled_from(["inference", "training"]))
    def debit(self, amount: int, scope: str) -> None:
        self.model.expire_holds(self.now)
        eligible = self.model.eligible(scope, self.now)
        covered = min(amount, sum(g.remaining - g.held for g in eligible))
        overage = amount - covered
        expected_ok = overage <= OVERDRAFT - sum(self.model.debt.values())
        try:
            result = self.ledger.debit(self.org, amount, scope=scope)
        except InsufficientCredits:
            assert not expected_ok
            return
        assert expected_ok
        paid = []
        for grant in eligible:
            take = min(grant.remaining - grant.held, covered)
            if take:
                grant.remaining -= take
                covered -= take
                paid.append([grant.id, take])
        assert result["paid"] == paid and result["overage"] == overage
        self.model.debt[scope] += overage
        self.model.used += amount

    @rule(grant_id=grants)
    def void_grant(self, grant_id: str) -> None:
        self.model.expire_holds(self.now)
        grant = self.model.grants[grant_id]
        try:
            self.ledger.void_grant(self.org, grant_id)
        except InvalidInput:
            assert grant.status != "active"
            return
        assert grant.status == "active"
        grant.status, grant.remaining = "voided", grant.held

    @rule()
    def expire(self) -> None:
        expired = self.ledger.expire_due(self.org)
        due_holds = [h for h in self.model.holds.values() if h.status == "pending" and h.expires_at <= self.now]
        self.model.expire_holds(self.now)
        due_grants = [g for g in self.model.grants.values()
                      if g.status == "active" and g.expires_at is not None and g.expires_at <= self.now]
        for grant in due_grants:
            grant.status, grant.remaining = "expired", grant.held
        assert expired == len(due_holds) + len(due_grants)

    @rule(seconds=st.sampled_from([1, 5, 30, 61, 200]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds=seconds)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def balances_match_the_model(self) -> None:
        now = self.now
        balance = self.ledger.balance(self.org)
        live_pending = [h for h in self.model.holds.values() if h.status == "pending" and h.expires_at > now]
        pending = sum(h.amount for h in live_pending)
        # Reads count holds past their ttl as released even before an operation books that.
        free = {g.id: g.remaining - g.held for g in self.model.grants.values()}
        for hold in self.model.holds.values():
            if hold.status == "pending" and hold.expires_at <= now:
                for grant_id, leg in hold.legs:
                    free[grant_id] += leg
        available = (sum(free[g.id] for g in self.model.grants.values() if g.live(now))
                     - sum(self.model.debt.values()))
        assert (balance.available, balance.pending, balance.debt) == (available, pending, sum(self.model.debt.values()))
        rows = {g.id: (g.remaining, g.held, g.status) for g in self.ledger.list_grants(self.org)}
        assert rows == {g.id: (g.remaining, g.held, g.status) for g in self.model.grants.values()}

    @invariant()
    def never_overspent(self) -> None:
        pending = sum(h.amount for h in self.model.holds.values() if h.status == "pending")
        debt = sum(self.model.debt.values())
        assert self.model.used - debt + pending <= self.model.granted
        with self.database.read() as connection:
            posted, held_total = connection.execute(text(
                "SELECT (SELECT COALESCE(SUM(posted), 0) FROM holds WHERE org_id = :o), "
                "(SELECT COALESCE(SUM(amount), 0) FROM holds WHERE org_id = :o AND status = 'pending')"),
                {"o": self.org}).one()
        assert posted + held_total <= self.model.granted + debt

    def teardown(self) -> None:
        report = verify(self.database)
        assert report.ok, report.problems


def run_machine(ledger: Ledger, database: Database, clock: ManualClock, examples: int) -> None:
    machine = type("BoundLedgerMachine", (LedgerMachine,), {"ledger": ledger, "database": database, "clock": clock})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=20, deadline=None, database=None,
        # Shrinking replays hundreds of database-backed runs and outlasts the timeout; the
        # failing sequence is printed unshrunk instead (20 steps at most).
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))


def test_ledger_against_the_reference_model(ledger: Ledger, database: Database, clock: ManualClock) -> None:
    run_machine(ledger, database, clock, examples=60 if database.is_sqlite else 15)


def test_verify_after_the_run_covers_every_organization(ledger: Ledger, database: Database,
                                                         clock: ManualClock) -> None:
    run_machine(ledger, database, clock, examples=3)
    report = verify(database)
    assert report.ok and report.organizations >= 3


pytestmark = pytest.mark.timeout(120)
