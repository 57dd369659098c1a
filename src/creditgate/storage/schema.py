"""The relational schema. Every ledger invariant the code keeps is also a constraint here.

Amounts are BIGINT micro-units (see ``creditgate.ledger.credits``); instants are BIGINT epoch
microseconds (see ``creditgate.clock``). Both compare and sum identically on SQLite and
PostgreSQL, which keeps the two backends' behaviour the same.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

ID = String(40)

orgs = Table(
    "orgs", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("overdraft_limit", BigInteger, nullable=False, server_default="0"),
    # Overage booked beyond the grants (a negative balance), per scope; the next grant that
    # covers the scope pays it off first.
    Column("debt_inference", BigInteger, nullable=False, server_default="0"),
    Column("debt_training", BigInteger, nullable=False, server_default="0"),
    Column("chain_seq", BigInteger, nullable=False, server_default="0"),
    Column("chain_head", String(64), nullable=False, server_default=""),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("metadata", Text, nullable=False, server_default="{}"),
    CheckConstraint("overdraft_limit >= 0", name="overdraft_nonnegative"),
    CheckConstraint("debt_inference >= 0 AND debt_training >= 0", name="debt_nonnegative"),
    CheckConstraint("debt_inference + debt_training <= overdraft_limit", name="debt_within_limit"),
    CheckConstraint("chain_seq >= 0", name="chain_seq_nonnegative"),
)

projects = Table(
    "projects", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("org_id", "name", name="uq_projects_org_name"),
)

grants = Table(
    "grants", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("scope", String(20), nullable=False),
    Column("allow", Text, nullable=True),
    Column("priority", Integer, nullable=False),
    Column("effective_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("amount", BigInteger, nullable=False),
    # remaining = amount minus what was consumed, expired or forfeited; held = the part of
    # remaining that pending holds have earmarked.
    Column("remaining", BigInteger, nullable=False),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("cost_basis", BigInteger, nullable=False, server_default="0"),
    Column("currency", String(8), nullable=False, server_default="USD"),
    Column("status", String(10), nullable=False, server_default="active"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("source_grant_id", ID, ForeignKey("grants.id"), nullable=True),
    Column("rollover", Text, nullable=True),
    Column("metadata", Text, nullable=False, server_default="{}"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("0 <= held AND held <= remaining AND remaining <= amount", name="remaining_bounds"),
    CheckConstraint("cost_basis >= 0", name="cost_basis_nonnegative"),
    CheckConstraint("kind IN ('purchase','trial','promotional','rollover','adjustment','recurring')",
                    name="kind_known"),
    CheckConstraint("scope IN ('inference','training','any')", name="scope_known"),
    CheckConstraint("status IN ('active','voided','expired')", name="status_known"),
    CheckConstraint("expires_at_us IS NULL OR expires_at_us > effective_at_us", name="expiry_after_start"),
    Index("ix_grants_org_status", "org_id", "status"),
    Index("ix_grants_status_expiry", "status", "expires_at_us"),
)

holds = Table(
    "holds", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("scope", String(20), nullable=False),
    Column("model", String(200), nullable=True),
    Column("status", String(10), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("posted", BigInteger, nullable=False, server_default="0"),
    Column("resolved_at_us", BigInteger, nullable=True),
    # [[grant_id, amount], ...] in burn-down order: which grants the hold earmarked.
    Column("legs", Text, nullable=False),
    Column("metadata", Text, nullable=False, server_default="{}"),
    # Ids of the budgets this hold counts against, as a JSON list.
    Column("budgets", Text, nullable=False, server_default="[]"),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("0 <= posted AND posted <= amount", name="posted_bounds"),
    CheckConstraint("status IN ('pending','posted','voided','expired')", name="status_known"),
    CheckConstraint("status <> 'pending' OR (posted = 0 AND resolved_at_us IS NULL)",
                    name="pending_unresolved"),
    CheckConstraint("expires_at_us > created_at_us", name="expiry_after_start"),
    # Only pending holds are ever looked up by expiry; resolved ones drop out of the index.
    Index("ix_holds_pending_expiry", "expires_at_us", "org_id",
          sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
)

budgets = Table(
    "budgets", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("subject", String(60), nullable=False),
    Column("cap", BigInteger, nullable=False),
    Column("mode", String(8), nullable=False),
    Column("period", String(8), nullable=False),
    Column("spent", BigInteger, nullable=False, server_default="0"),
    Column("held", BigInteger, nullable=False, server_default="0"),
    Column("period_start_us", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("org_id", "subject", name="uq_budgets_org_subject"),
    CheckConstraint("cap >= 0 AND spent >= 0 AND held >= 0", name="amounts_nonnegative"),
    CheckConstraint("mode IN ('hard','soft','off')", name="mode_known"),
    CheckConstraint("period IN ('day','month')", name="period_known"),
)

journal_transactions = Table(
    "journal_transactions", metadata,
    Column("org_id", ID, ForeignKey("orgs.id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", String(30), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("ref", String(80), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Column("fingerprint", String(64), nullable=True),
    Column("result", Text, nullable=False),
    # The double-entry legs, [[account, grant_id, amount], ...], summing to zero. They live in the
    # transaction row (not a row per leg) because the journal is written on the hot path and is
    # only ever read a whole transaction at a time.
    Column("entries", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint("seq >= 1", name="seq_positive"),
    # Partial: most journal writes (gateway holds, expiries) carry no key, and an index entry per
    # keyless row would only cost time on the hot path.
    Index("uq_journal_transactions_idempotency", "org_id", "idempotency_key", unique=True,
          sqlite_where=text("idempotency_key IS NOT NULL"),
          postgresql_where=text("idempotency_key IS NOT NULL")),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("scope", String(80), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)
