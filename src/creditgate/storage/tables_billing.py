"""Billing tables: cycles, statements, the close lease, allowances, trials, top-ups, invoices,
training jobs and statement signing keys. Amounts are BIGINT micro-units, instants epoch µs."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from creditgate.storage.schema import ID, metadata

billing_cycles = Table(
    "billing_cycles", metadata,
    Column("org_id", ID, ForeignKey("orgs.id"), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("anchor_day", Integer, nullable=False, server_default="1"),
    Column("length_days", Integer, nullable=False, server_default="30"),
    Column("timezone", String(64), nullable=False),
    # Period 0 is the one containing this instant; changing a cycle keeps closed periods.
    Column("origin_us", BigInteger, nullable=False),
    Column("late_grace_s", BigInteger, nullable=False, server_default="259200"),
    Column("late_after_grace", String(20), nullable=False, server_default="reject"),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("kind IN ('monthly','days')", name="kind_known"),
    CheckConstraint("anchor_day BETWEEN 1 AND 31", name="anchor_day_range"),
    CheckConstraint("length_days BETWEEN 1 AND 366", name="length_days_range"),
    CheckConstraint("late_after_grace IN ('book_current','reject')", name="late_after_grace_known"),
)

# One row per closed period: its place in the journal and its signed statement.
billing_statements = Table(
    "billing_statements", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("period_index", Integer, nullable=False),
    Column("period_start_us", BigInteger, nullable=False),
    Column("period_end_us", BigInteger, nullable=False),
    # The journal transactions of this statement are those with seq <= cut_seq and an effective
    # time before period_end_us that no earlier statement took; every seq < next_low_seq is in
    # this statement or an earlier one (see billing/statements.py).
    Column("cut_seq", BigInteger, nullable=False),
    Column("next_low_seq", BigInteger, nullable=False),
    Column("totals", Text, nullable=False),
    Column("document", Text, nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    CheckConstraint("period_end_us > period_start_us", name="period_order"),
    CheckConstraint("cut_seq >= 1 AND next_low_seq >= 1", name="seq_positive"),
    UniqueConstraint("org_id", "period_start_us", name="uq_billing_statements_org_period"),
    Index("ix_billing_statements_org_end", "org_id", "period_end_us"),
)

billing_leases = Table(
    "billing_leases", metadata,
    Column("name", String(80), primary_key=True),
    Column("holder", String(80), nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
)

billing_allowances = Table(
    "billing_allowances", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("scope", String(20), nullable=False),
    Column("allow", Text, nullable=True),
    Column("priority", Integer, nullable=False),
    Column("expires_after_periods", Integer, nullable=True),
    Column("rollover", Text, nullable=True),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at_us", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("scope IN ('inference','training','any')", name="scope_known"),
    UniqueConstraint("org_id", "name", name="uq_billing_allowances_org_name"),
)

billing_settings = Table(
    "billing_settings", metadata,
    Column("name", String(80), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

# The primary key is what makes a trial "never granted twice to the same organization".
billing_trials = Table(
    "billing_trials", metadata,
    Column("org_id", ID, ForeignKey("orgs.id"), primary_key=True),
    Column("grant_id", ID, nullable=False),
    Column("granted_at_us", BigInteger, nullable=False),
)

billing_topup_rules = Table(
    "billing_topup_rules", metadata,
    Column("org_id", ID, ForeignKey("orgs.id"), primary_key=True),
    Column("threshold", BigInteger, nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False, server_default="USD"),
    Column("bundle", String(200), nullable=True),
    Column("cooldown_s", BigInteger, nullable=False),
    Column("max_per_period", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("last_topup_at_us", BigInteger, nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("threshold >= 0 AND credits > 0 AND price >= 0", name="amounts_valid"),
    CheckConstraint("cooldown_s >= 0 AND max_per_period >= 1", name="limits_valid"),
)

billing_invoices = Table(
    "billing_invoices", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("reason", String(20), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(10), nullable=False),
    Column("idempotency_key", String(200), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("provider_ref", String(200), nullable=True),
    Column("period_start_us", BigInteger, nullable=True),
    Column("grant_id", ID, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("paid_at_us", BigInteger, nullable=True),
    CheckConstraint("status IN ('open','paid','void')", name="status_known"),
    CheckConstraint("credits > 0 AND price >= 0", name="amounts_valid"),
    CheckConstraint("status <> 'paid' OR grant_id IS NOT NULL", name="paid_has_grant"),
    UniqueConstraint("org_id", "idempotency_key", name="uq_billing_invoices_org_key"),
    Index("ix_billing_invoices_org_status", "org_id", "status"),
)

training_jobs = Table(
    "training_jobs", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("project_id", ID, nullable=True),
    Column("model", String(200), nullable=False),
    Column("dataset_ref", String(500), nullable=False),
    Column("credits_per_gpu_hour", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("stop_reason", String(200), nullable=True),
    # GPU-hours in micro-hours, cumulative as reported.
    Column("gpu_hours_reported", BigInteger, nullable=False, server_default="0"),
    Column("credits_booked", BigInteger, nullable=False, server_default="0"),
    Column("credits_unbooked", BigInteger, nullable=False, server_default="0"),
    Column("reports", Integer, nullable=False, server_default="0"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("status IN ('running','stopped','completed')", name="status_known"),
    CheckConstraint("gpu_hours_reported >= 0 AND credits_booked >= 0 AND credits_unbooked >= 0",
                    name="amounts_nonnegative"),
    Index("ix_training_jobs_org", "org_id"),
)

billing_signing_keys = Table(
    "billing_signing_keys", metadata,
    Column("key_id", String(40), primary_key=True),
    # "generated" for the key this database made for itself (unique, so two processes starting
    # at once agree on one key); NULL for public keys remembered from the environment.
    Column("slot", String(20), nullable=True, unique=True),
    Column("public_key", String(100), nullable=False),
    Column("private_key", String(100), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
)
