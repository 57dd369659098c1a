"""The schema keeps the ledger's invariants too: CHECK, UNIQUE and foreign keys refuse bad rows."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database

from .helpers import c, execute, snapshot


@pytest.fixture
def ids(ledger: Ledger) -> dict[str, str]:
    org = ledger.create_org("acme", overdraft_limit=c("5")).id
    grant = ledger.grant(org, c("10"))["grant_id"]
    pending = ledger.reserve(org, c("2"))["hold_id"]
    posted = ledger.reserve(org, c("3"))["hold_id"]
    ledger.post(org, posted, c("1"))
    ledger.debit(org, c("1"), idempotency_key="once")
    return {"org": org, "grant": grant, "pending": pending, "posted": posted}


@pytest.mark.parametrize("statement", [
    "UPDATE grants SET remaining = amount + 1 WHERE id = :grant",
    "UPDATE grants SET remaining = -1, held = 0 WHERE id = :grant",
    "UPDATE grants SET held = remaining + 1 WHERE id = :grant",
    "UPDATE grants SET held = -1 WHERE id = :grant",
    "UPDATE grants SET amount = 0, remaining = 0, held = 0 WHERE id = :grant",
    "UPDATE grants SET cost_basis = -1 WHERE id = :grant",
    "UPDATE grants SET kind = 'gift' WHERE id = :grant",
    "UPDATE grants SET scope = 'everything' WHERE id = :grant",
    "UPDATE grants SET status = 'gone' WHERE id = :grant",
    "UPDATE grants SET expires_at_us = effective_at_us WHERE id = :grant",
    "UPDATE grants SET org_id = 'org_missing' WHERE id = :grant",
    "UPDATE holds SET posted = amount + 1 WHERE id = :posted",
    "UPDATE holds SET posted = -1 WHERE id = :posted",
    "UPDATE holds SET amount = 0 WHERE id = :pending",
    "UPDATE holds SET posted = 1 WHERE id = :pending",
    "UPDATE holds SET status = 'pending' WHERE id = :posted",
    "UPDATE holds SET status = 'lost' WHERE id = :posted",
    "UPDATE holds SET expires_at_us = created_at_us WHERE id = :pending",
    "UPDATE orgs SET overdraft_limit = -1 WHERE id = :org",
    "UPDATE orgs SET debt_inference = -1 WHERE id = :org",
    "UPDATE orgs SET debt_inference = overdraft_limit + 1 WHERE id = :org",
    "UPDATE orgs SET chain_seq = -1 WHERE id = :org",
    "UPDATE journal_transactions SET seq = 0 WHERE org_id = :org AND seq = 1",
    "UPDATE journal_transactions SET seq = 2 WHERE org_id = :org AND seq = 1",
    "UPDATE journal_transactions SET idempotency_key = 'once' WHERE org_id = :org AND seq = 1",
    "INSERT INTO orgs (id, name, created_at_us, chain_head) SELECT 'org_twin', name, 0, '' FROM orgs WHERE id = :org",
    ("INSERT INTO journal_transactions (org_id, seq, kind, at_us, result, entries, prev_hash, hash) "
     "VALUES ('org_missing', 1, 'grant', 0, '{}', '[]', '', '')"),
    ("INSERT INTO holds (id, org_id, amount, scope, status, created_at_us, expires_at_us, legs) "
     "VALUES ('hld_x', 'org_missing', 1, 'inference', 'pending', 0, 1, '[]')"),
])
def test_the_schema_refuses(database: Database, ids: dict[str, str], statement: str) -> None:
    before = snapshot(database)
    params = {name: value for name, value in ids.items() if f":{name}" in statement}
    with pytest.raises(IntegrityError):
        execute(database, statement, **params)
    assert snapshot(database) == before
    assert verify(database).ok


def test_the_example_in_the_brief(database: Database, ids: dict[str, str]) -> None:
    with pytest.raises(IntegrityError, match="remaining_bounds"):
        execute(database, "UPDATE grants SET remaining = amount + 1 WHERE id = :grant", grant=ids["grant"])


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    from creditgate.storage.migrate import upgrade

    database = Database(sqlite_url)
    try:
        upgrade(database)
        with database.read() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        database.dispose()
