"""Tables of the REST API part: keys, HTTP idempotency, the bundle catalog and purchases, usage.

Usage is stored twice on purpose: ``usage_records`` keeps one row per metered request or event
(the detail an organization can audit), and ``usage_rollup_hourly`` keeps per-hour totals along
one dimension at a time (model, project, key, one tag), so that usage queries read a few thousand
rows however many records there are. Ingested events get their rollups in the same transaction;
gateway requests leave theirs to a background pass, and queries add the records still pending.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from creditgate.storage.schema import ID, metadata

api_keys = Table(
    "api_keys", metadata,
    Column("id", ID, primary_key=True),
    # The short public part of the key, used to find the row; the rest is only ever hashed.
    Column("prefix", String(24), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=True),
    Column("project_id", ID, ForeignKey("projects.id"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
    CheckConstraint("kind IN ('admin','org')", name="kind_known"),
    CheckConstraint("(kind = 'admin') = (org_id IS NULL)", name="admin_has_no_org"),
    Index("ix_api_keys_org", "org_id"),
)

api_idempotency = Table(
    "api_idempotency", metadata,
    # Whose key it is (an org id, or "admin"): one client's keys never collide with another's.
    Column("scope", String(80), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

api_bundles = Table(
    "api_bundles", metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("credits", BigInteger, nullable=False),
    Column("bonus_credits", BigInteger, nullable=False, server_default="0"),
    Column("validity_days", Integer, nullable=True),
    Column("rollover", Text, nullable=False, server_default='"none"'),
    Column("scope", String(20), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("description", String(500), nullable=False, server_default=""),
    Column("active", Integer, nullable=False, server_default="1"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    CheckConstraint("price >= 0 AND credits > 0 AND bonus_credits >= 0", name="amounts_valid"),
    CheckConstraint("validity_days IS NULL OR validity_days > 0", name="validity_positive"),
    CheckConstraint("scope IN ('inference','training','any')", name="scope_known"),
)

api_purchases = Table(
    "api_purchases", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("bundle_id", ID, ForeignKey("api_bundles.id"), nullable=False),
    Column("payment_reference", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("grant_ids", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("org_id", "payment_reference", name="uq_api_purchases_payment"),
)

usage_records = Table(
    "usage_records", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("project_id", ID, nullable=True),
    Column("key_id", ID, nullable=True),
    Column("model", String(200), nullable=False),
    Column("meters", Text, nullable=False),
    Column("tags", Text, nullable=False, server_default="{}"),
    Column("credits", BigInteger, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=True),
    Column("source", String(256), nullable=True),
    Column("event_id", String(128), nullable=True),
    # 1 while the record's hourly rollups are not yet written (see usage.records.roll_up_pending).
    Column("rollup_pending", SmallInteger, nullable=False, server_default="0"),
    CheckConstraint("credits >= 0", name="credits_nonnegative"),
    Index("ix_usage_records_org_time", "org_id", "at_us"),
    Index("ix_usage_records_rollup_pending", "org_id", "at_us", sqlite_where=text("rollup_pending = 1"),
          postgresql_where=text("rollup_pending = 1")),
)

usage_rollup_hourly = Table(
    "usage_rollup_hourly", metadata,
    Column("org_id", ID, primary_key=True),
    # "total", "model", "project", "key" or "tag:<name>"; value "" stands for none.
    Column("dimension", String(80), primary_key=True),
    Column("hour_us", BigInteger, primary_key=True),
    Column("value", String(200), primary_key=True),
    # A meter name, or "$credits" (micro-credits) or "$events" (record count).
    Column("meter", String(64), primary_key=True),
    Column("quantity", BigInteger, nullable=False),
)

# Event de-duplication claims: (source, id) within an organization (usage.ingest._claim_key).
usage_event_keys = Table(
    "usage_event_keys", metadata,
    Column("org_id", ID, primary_key=True),
    Column("source", String(256), primary_key=True),
    Column("event_id", String(128), primary_key=True),
    Column("received_at_us", BigInteger, nullable=False),
    Index("ix_usage_event_keys_received", "received_at_us"),
)

# The rate card document stored through the API (used when the pricing part provides none).
api_rate_cards = Table(
    "api_rate_cards", metadata,
    Column("name", String(200), primary_key=True),
    Column("document", Text, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)
