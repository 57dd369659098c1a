"""Recording events and fanning them out to webhook endpoints, inside the caller's transaction.

An event is written at most once: its ``dedupe_key`` names what it is about (a journal seq, a
statement, an alert rule's generation) and is UNIQUE, so a second writer of the same event
changes nothing. The deliveries to every enabled endpoint that subscribes to the event's type
are created in the same transaction.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from creditgate.clock import iso
from creditgate.ledger.book import new_id
from creditgate.storage.tables_tracking import (
    tracking_events,
    tracking_webhook_deliveries,
    tracking_webhook_endpoints,
)

EVENT_TYPES: Final = ("alert.fired", "alert.resolved", "balance.low", "grant.created", "grant.expired",
                      "topup.completed", "period.closed")
ATTEMPTS_MAX: Final = 8


def insert_ignoring_duplicates(connection: Connection, table: Any, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; whether the row was inserted."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing()
    return bool(connection.execute(statement).rowcount)


def record_event(connection: Connection, org_id: str, event_type: str, dedupe_key: str,
                 data: dict[str, Any], at_us: int) -> str | None:
    """Record the event and queue its deliveries; its id, or None when it was recorded before."""
    assert event_type in EVENT_TYPES, event_type
    event_id = new_id("evt")
    payload = {"type": event_type, "timestamp": iso(at_us), "data": {"org_id": org_id, **data}}
    inserted = insert_ignoring_duplicates(connection, tracking_events, {
        "id": event_id, "org_id": org_id, "type": event_type, "dedupe_key": dedupe_key[:160],
        "payload": orjson.dumps(payload).decode(), "at_us": at_us})
    if not inserted:
        return None
    endpoints = connection.execute(select(tracking_webhook_endpoints.c.id,
                                          tracking_webhook_endpoints.c.event_types).where(
        (tracking_webhook_endpoints.c.org_id == org_id) & (tracking_webhook_endpoints.c.enabled == 1))).all()
    rows = [{"id": new_id("msg"), "org_id": org_id, "endpoint_id": endpoint_id, "event_id": event_id,
             "status": "pending", "attempts": 0, "attempt_limit": ATTEMPTS_MAX,
             "next_attempt_at_us": at_us, "created_at_us": at_us}
            for endpoint_id, types in endpoints if subscribes(types, event_type)]
    if rows:
        connection.execute(insert(tracking_webhook_deliveries), rows)
    return event_id


def subscribes(types_json: str, event_type: str) -> bool:
    types = orjson.loads(types_json)
    return "*" in types or event_type in types
