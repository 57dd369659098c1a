"""Shared helpers for the ledger's integration tests (real SQLite files and PostgreSQL databases)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from creditgate.ledger.credits import parse_amount
from creditgate.storage.database import Database

LEDGER_TABLES = ("orgs", "projects", "grants", "holds", "journal_transactions", "idempotency_keys")


def c(amount: str) -> int:
    return parse_amount(amount)


def snapshot(database: Database) -> dict[str, Any]:
    """Every ledger row, so that a test can assert that a refused or replayed call wrote nothing."""
    rows: dict[str, Any] = {}
    with database.read() as connection:
        for table in LEDGER_TABLES:
            rows[table] = sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
    return rows


def execute(database: Database, sql: str, **params: Any) -> None:
    """Run one statement in its own committed transaction (how a tamperer would edit the file)."""
    with database.engine.begin() as connection:
        connection.execute(text(sql), params)


def scalar(database: Database, sql: str, **params: Any) -> Any:
    with database.read() as connection:
        return connection.execute(text(sql), params).scalar()


def without_replayed(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key != "replayed"}
