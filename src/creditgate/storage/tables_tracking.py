"""Tracking tables: alert rules and the alerts they fired, events, webhook endpoints, deliveries
and their attempts, the evaluator's per-organization cursor, and small named settings.

Exactly-once rests on the schema: an alert rule changes state only by a conditional UPDATE on
its ``generation``, every event carries a deterministic ``dedupe_key`` (UNIQUE), and a delivery
is UNIQUE per (endpoint, event). Two evaluators racing on the same change therefore write one
alert, one event and one delivery.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
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

tracking_alert_rules = Table(
    "tracking_alert_rules", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    # available_below, depletion_within, expiring_waste, spend_spike (budget_used: see docs).
    Column("kind", String(30), nullable=False),
    # The rule's parameters as JSON (amounts as decimal strings), e.g. {"credits": "100"}.
    Column("params", Text, nullable=False),
    Column("hysteresis_percent", Integer, nullable=False, server_default="10"),
    Column("state", String(10), nullable=False, server_default="ok"),
    # Bumped by every state change; the conditional UPDATE on it is what makes a crossing fire once.
    Column("generation", BigInteger, nullable=False, server_default="0"),
    Column("last_value", String(64), nullable=True),
    Column("enabled", Integer, nullable=False, server_default="1"),
    Column("created_at_us", BigInteger, nullable=False),
    Column("changed_at_us", BigInteger, nullable=True),
    Column("evaluated_at_us", BigInteger, nullable=True),
    CheckConstraint("state IN ('ok','firing')", name="state_known"),
    CheckConstraint("kind IN ('available_below','budget_used','depletion_within','expiring_waste','spend_spike')",
                    name="kind_known"),
    CheckConstraint("hysteresis_percent BETWEEN 0 AND 100", name="hysteresis_range"),
    Index("ix_tracking_alert_rules_org", "org_id"),
)

tracking_alerts = Table(
    "tracking_alerts", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("rule_id", ID, ForeignKey("tracking_alert_rules.id"), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("generation", BigInteger, nullable=False),
    # fired (the condition crossed into alarm) or resolved (it crossed back past the hysteresis).
    Column("transition", String(10), nullable=False),
    Column("message", String(500), nullable=False),
    Column("details", Text, nullable=False, server_default="{}"),
    Column("at_us", BigInteger, nullable=False),
    CheckConstraint("transition IN ('fired','resolved')", name="transition_known"),
    UniqueConstraint("rule_id", "generation", name="uq_tracking_alerts_rule_generation"),
    Index("ix_tracking_alerts_org_time", "org_id", "at_us"),
)

tracking_events = Table(
    "tracking_events", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("type", String(40), nullable=False),
    # What the event is about, derived from its source (journal seq, statement id, alert
    # generation): a second evaluator that sees the same change cannot write it twice.
    Column("dedupe_key", String(160), nullable=False, unique=True),
    Column("payload", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_tracking_events_org_time", "org_id", "at_us"),
)

tracking_webhook_endpoints = Table(
    "tracking_webhook_endpoints", metadata,
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("url", String(500), nullable=False),
    Column("description", String(200), nullable=False, server_default=""),
    # JSON list of event types, or ["*"].
    Column("event_types", Text, nullable=False),
    Column("secret", String(120), nullable=False),
    # After a rotation the old secret still signs (beside the new one) until it expires.
    Column("previous_secret", String(120), nullable=True),
    Column("previous_secret_expires_at_us", BigInteger, nullable=True),
    Column("enabled", Integer, nullable=False, server_default="1"),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_tracking_webhook_endpoints_org", "org_id"),
)

tracking_webhook_deliveries = Table(
    "tracking_webhook_deliveries", metadata,
    # The Standard Webhooks message id (``webhook-id``): the same on every attempt.
    Column("id", ID, primary_key=True),
    Column("org_id", ID, ForeignKey("orgs.id"), nullable=False),
    Column("endpoint_id", ID, ForeignKey("tracking_webhook_endpoints.id"), nullable=False),
    Column("event_id", ID, ForeignKey("tracking_events.id"), nullable=False),
    Column("status", String(10), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    # Attempts end at this count; a manual redelivery raises it.
    Column("attempt_limit", Integer, nullable=False),
    Column("next_attempt_at_us", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(300), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger, nullable=True),
    CheckConstraint("status IN ('pending','delivered','failed')", name="status_known"),
    CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
    UniqueConstraint("endpoint_id", "event_id", name="uq_tracking_webhook_deliveries_endpoint_event"),
    Index("ix_tracking_webhook_deliveries_due", "status", "next_attempt_at_us"),
    Index("ix_tracking_webhook_deliveries_org", "org_id", "created_at_us"),
)

tracking_delivery_attempts = Table(
    "tracking_delivery_attempts", metadata,
    Column("delivery_id", ID, ForeignKey("tracking_webhook_deliveries.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("at_us", BigInteger, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(300), nullable=True),
    Column("duration_ms", Integer, nullable=False),
)

tracking_cursors = Table(
    "tracking_cursors", metadata,
    Column("org_id", ID, ForeignKey("orgs.id"), primary_key=True),
    # The last journal seq whose events were derived; statements seen up to this period end.
    Column("journal_seq", BigInteger, nullable=False, server_default="0"),
    Column("statement_end_us", BigInteger, nullable=False, server_default="0"),
    Column("updated_at_us", BigInteger, nullable=False),
)

tracking_settings = Table(
    "tracking_settings", metadata,
    Column("name", String(80), primary_key=True),
    Column("value", Text, nullable=False),
)
