"""Webhook endpoints and the delivery worker.

Delivery, step by step (:meth:`Webhooks.deliver_due`, called by the tracking worker every second
or stepped by tests): take the due deliveries, **claim** each by a conditional UPDATE on its
attempt count (so two workers never send the same attempt), POST the event signed per Standard
Webhooks, log the attempt, then mark the delivery delivered (2xx), failed (attempt limit
reached), or due again after an exponential backoff: ``BACKOFF_BASE_S * 2^(attempt-1)``, capped
at ``BACKOFF_MAX_S``. A claim holds for ``CLAIM_LEASE_S``: a worker that dies mid-attempt leaves
the delivery due again after that. Receivers deduplicate on ``webhook-id``, which stays the same
on every attempt and on manual redelivery.
"""

from __future__ import annotations

import time
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy import insert, select, update

from creditgate.clock import iso
from creditgate.errors import InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.storage.tables_tracking import (
    tracking_cursors,
    tracking_delivery_attempts,
    tracking_events,
    tracking_webhook_deliveries,
    tracking_webhook_endpoints,
)
from creditgate.text import CONTROL_CHARACTERS
from creditgate.tracking import signing
from creditgate.tracking.events import ATTEMPTS_MAX, EVENT_TYPES

BACKOFF_BASE_S: Final = 10
BACKOFF_MAX_S: Final = 6 * 3600
CLAIM_LEASE_S: Final = 60
DELIVERY_TIMEOUT_S: Final = 10.0
DELIVERIES_PER_STEP_MAX: Final = 100
ENDPOINTS_PER_ORG_MAX: Final = 20
URL_LENGTH_MAX: Final = 500
ROTATION_OVERLAP_S_DEFAULT: Final = 24 * 3600
ROTATION_OVERLAP_S_MAX: Final = 7 * 24 * 3600
ERROR_TEXT_MAX: Final = 300
LIST_LIMIT_MAX: Final = 500
US: Final = 1_000_000


def backoff_s(attempt: int) -> int:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    return int(min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S))


def check_url(url: Any) -> str:
    if not isinstance(url, str) or not 1 <= len(url) <= URL_LENGTH_MAX:
        raise InvalidInput(f"url must be 1 to {URL_LENGTH_MAX} characters", param="url")
    if CONTROL_CHARACTERS.search(url):
        raise InvalidInput("url must not contain control characters", param="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL", param="url")
    return url


def check_event_types(types: Any) -> list[str]:
    if types is None:
        return ["*"]
    if not isinstance(types, list) or not types:
        raise InvalidInput("event_types must be a non-empty list", param="event_types")
    for item in types:
        if item != "*" and item not in EVENT_TYPES:
            raise InvalidInput(f"unknown event type {item!r}: use * or {', '.join(EVENT_TYPES)}",
                               param="event_types")
    return sorted(set(types))


class Webhooks:
    def __init__(self, database: Any, clock: Any, *, client: httpx.Client | None = None) -> None:
        self.database = database
        self.clock = clock
        self._client = client

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=DELIVERY_TIMEOUT_S, follow_redirects=False, trust_env=False)
            # One client delivers for every organization: keep no cookie, or one endpoint's
            # cookie would go to another organization's endpoint on the same host.
            self._client.cookies.jar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # ------------------------------------------------------------------ endpoints
    def create_endpoint(self, org_id: str, url: str, *, event_types: Any = None,
                        description: str = "") -> dict[str, Any]:
        """Create an endpoint; the answer carries its secret (also readable by ``manage`` keys)."""
        url = check_url(url)
        types = check_event_types(event_types)
        if not isinstance(description, str) or CONTROL_CHARACTERS.search(description):
            raise InvalidInput("description must be text without control characters", param="description")
        now = self.clock.now_us()
        endpoint_id = new_id("whe")
        with self.database.write() as connection:
            count = len(connection.execute(select(tracking_webhook_endpoints.c.id).where(
                tracking_webhook_endpoints.c.org_id == org_id)).all())
            if count >= ENDPOINTS_PER_ORG_MAX:
                raise InvalidInput(f"an organization has at most {ENDPOINTS_PER_ORG_MAX} endpoints",
                                   param="url")
            connection.execute(insert(tracking_webhook_endpoints).values(
                id=endpoint_id, org_id=org_id, url=url, description=description[:200],
                event_types=orjson.dumps(types).decode(), secret=signing.new_secret(), enabled=1,
                created_at_us=now))
            _start_cursor(connection, org_id, now)
        return self.get_endpoint(org_id, endpoint_id, with_secret=True)

    def get_endpoint(self, org_id: str, endpoint_id: str, *, with_secret: bool = False) -> dict[str, Any]:
        with self.database.read() as connection:
            row = connection.execute(select(tracking_webhook_endpoints).where(
                (tracking_webhook_endpoints.c.id == endpoint_id)
                & (tracking_webhook_endpoints.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found", param="endpoint_id")
        return _endpoint_dict(row, with_secret=with_secret, now_us=self.clock.now_us())

    def list_endpoints(self, org_id: str) -> list[dict[str, Any]]:
        with self.database.read() as connection:
            rows = connection.execute(select(tracking_webhook_endpoints).where(
                tracking_webhook_endpoints.c.org_id == org_id)
                .order_by(tracking_webhook_endpoints.c.created_at_us)).all()
        return [_endpoint_dict(row, with_secret=False, now_us=self.clock.now_us()) for row in rows]

    def set_enabled(self, org_id: str, endpoint_id: str, enabled: bool) -> dict[str, Any]:
        self.get_endpoint(org_id, endpoint_id)
        with self.database.write() as connection:
            connection.execute(update(tracking_webhook_endpoints).where(
                tracking_webhook_endpoints.c.id == endpoint_id).values(enabled=1 if enabled else 0))
        return self.get_endpoint(org_id, endpoint_id)

    def rotate_secret(self, org_id: str, endpoint_id: str, *,
                      overlap_s: int = ROTATION_OVERLAP_S_DEFAULT) -> dict[str, Any]:
        """A new secret; the old one keeps signing beside it for ``overlap_s`` seconds."""
        if not 0 <= overlap_s <= ROTATION_OVERLAP_S_MAX:
            raise InvalidInput(f"overlap_s must be from 0 to {ROTATION_OVERLAP_S_MAX}", param="overlap_s")
        current = self.get_endpoint(org_id, endpoint_id, with_secret=True)
        now = self.clock.now_us()
        with self.database.write() as connection:
            connection.execute(update(tracking_webhook_endpoints).where(
                (tracking_webhook_endpoints.c.id == endpoint_id)
                & (tracking_webhook_endpoints.c.secret == current["secret"])).values(
                secret=signing.new_secret(), previous_secret=current["secret"] if overlap_s else None,
                previous_secret_expires_at_us=now + overlap_s * US if overlap_s else None))
        return self.get_endpoint(org_id, endpoint_id, with_secret=True)

    # ------------------------------------------------------------------ deliveries
    def list_deliveries(self, org_id: str, *, endpoint_id: str | None = None,
                        limit: int = 50) -> list[dict[str, Any]]:
        table = tracking_webhook_deliveries
        query = (select(table, tracking_events.c.type).join(tracking_events, tracking_events.c.id == table.c.event_id)
                 .where(table.c.org_id == org_id))
        if endpoint_id is not None:
            query = query.where(table.c.endpoint_id == endpoint_id)
        query = query.order_by(table.c.created_at_us.desc(), table.c.id).limit(max(1, min(limit, LIST_LIMIT_MAX)))
        with self.database.read() as connection:
            return [_delivery_dict(row) for row in connection.execute(query)]

    def get_delivery(self, org_id: str, delivery_id: str) -> dict[str, Any]:
        table = tracking_webhook_deliveries
        with self.database.read() as connection:
            row = connection.execute(select(table, tracking_events.c.type).join(
                tracking_events, tracking_events.c.id == table.c.event_id).where(
                (table.c.id == delivery_id) & (table.c.org_id == org_id))).first()
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found", param="delivery_id")
            attempts = connection.execute(select(tracking_delivery_attempts).where(
                tracking_delivery_attempts.c.delivery_id == delivery_id)
                .order_by(tracking_delivery_attempts.c.attempt)).all()
        return {**_delivery_dict(row), "log": [
            {"attempt": a.attempt, "at": iso(a.at_us), "status_code": a.status_code, "error": a.error,
             "duration_ms": a.duration_ms} for a in attempts]}

    def redeliver(self, org_id: str, delivery_id: str) -> dict[str, Any]:
        """Send again now (same ``webhook-id``), with a fresh allowance of attempts."""
        found = self.get_delivery(org_id, delivery_id)
        with self.database.write() as connection:
            connection.execute(update(tracking_webhook_deliveries).where(
                tracking_webhook_deliveries.c.id == delivery_id).values(
                status="pending", next_attempt_at_us=self.clock.now_us(),
                attempt_limit=found["attempts"] + ATTEMPTS_MAX))
        return self.get_delivery(org_id, delivery_id)

    def deliver_due(self, *, limit: int = DELIVERIES_PER_STEP_MAX) -> int:
        """Attempt every delivery that is due now (up to ``limit``); the number attempted."""
        now = self.clock.now_us()
        table = tracking_webhook_deliveries
        with self.database.read() as connection:
            due = connection.execute(select(table.c.id, table.c.attempts).where(
                (table.c.status == "pending") & (table.c.next_attempt_at_us <= now))
                .order_by(table.c.next_attempt_at_us).limit(limit)).all()
        attempted = 0
        for delivery_id, attempts in due:
            if self._claim(delivery_id, attempts, now):
                self._attempt(delivery_id, attempts + 1)
                attempted += 1
        return attempted

    def _claim(self, delivery_id: str, attempts: int, now_us: int) -> bool:
        table = tracking_webhook_deliveries
        with self.database.write() as connection:
            return bool(connection.execute(update(table).where(
                (table.c.id == delivery_id) & (table.c.attempts == attempts) & (table.c.status == "pending")
                & (table.c.next_attempt_at_us <= now_us)).values(
                attempts=attempts + 1, next_attempt_at_us=now_us + CLAIM_LEASE_S * US)).rowcount)

    def _attempt(self, delivery_id: str, attempt: int) -> None:
        table = tracking_webhook_deliveries
        endpoints = tracking_webhook_endpoints
        with self.database.read() as connection:
            row = connection.execute(select(
                table.c.attempt_limit, endpoints.c.url, endpoints.c.secret, endpoints.c.previous_secret,
                endpoints.c.previous_secret_expires_at_us, tracking_events.c.payload)
                .join(endpoints, endpoints.c.id == table.c.endpoint_id)
                .join(tracking_events, tracking_events.c.id == table.c.event_id)
                .where(table.c.id == delivery_id)).one()
        now = self.clock.now_us()
        keys = [row.secret]
        if row.previous_secret and (row.previous_secret_expires_at_us or 0) > now:
            keys.append(row.previous_secret)
        body = row.payload.encode()
        started = time.perf_counter()
        status_code: int | None = None
        error: str | None = None
        try:
            response = self.client.post(row.url, content=body,
                                        headers=signing.headers(keys, delivery_id, now // US, body))
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"answered {status_code}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"[:ERROR_TEXT_MAX]
        duration_ms = int((time.perf_counter() - started) * 1000)
        self._finish(delivery_id, attempt, row.attempt_limit, status_code, error, duration_ms)

    def _finish(self, delivery_id: str, attempt: int, attempt_limit: int, status_code: int | None,
                error: str | None, duration_ms: int) -> None:
        now = self.clock.now_us()
        if error is None:
            values: dict[str, Any] = {"status": "delivered", "delivered_at_us": now, "next_attempt_at_us": None}
        elif attempt >= attempt_limit:
            values = {"status": "failed", "next_attempt_at_us": None}
        else:
            values = {"next_attempt_at_us": now + backoff_s(attempt) * US}
        with self.database.write() as connection:
            connection.execute(insert(tracking_delivery_attempts).values(
                delivery_id=delivery_id, attempt=attempt, at_us=now, status_code=status_code,
                error=error, duration_ms=duration_ms))
            connection.execute(update(tracking_webhook_deliveries).where(
                (tracking_webhook_deliveries.c.id == delivery_id)
                & (tracking_webhook_deliveries.c.attempts == attempt)).values(
                last_status_code=status_code, last_error=error, **values))


def _start_cursor(connection: Any, org_id: str, now_us: int) -> None:
    """Events start from now: an endpoint does not receive the organization's history."""
    from creditgate.storage.schema import orgs
    from creditgate.tracking.events import insert_ignoring_duplicates

    seq = connection.execute(select(orgs.c.chain_seq).where(orgs.c.id == org_id)).scalar_one()
    insert_ignoring_duplicates(connection, tracking_cursors, {
        "org_id": org_id, "journal_seq": seq, "statement_end_us": now_us, "updated_at_us": now_us})


def _endpoint_dict(row: Any, *, with_secret: bool, now_us: int) -> dict[str, Any]:
    found = {"id": row.id, "org_id": row.org_id, "url": row.url, "description": row.description,
             "event_types": orjson.loads(row.event_types), "enabled": bool(row.enabled),
             "created_at": iso(row.created_at_us),
             "previous_secret_expires_at": iso(row.previous_secret_expires_at_us)
             if (row.previous_secret_expires_at_us or 0) > now_us else None}
    if with_secret:
        found["secret"] = row.secret
    return found


def _delivery_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "endpoint_id": row.endpoint_id, "event_id": row.event_id, "event_type": row.type,
            "status": row.status, "attempts": row.attempts, "attempt_limit": row.attempt_limit,
            "next_attempt_at": iso(row.next_attempt_at_us) if row.status == "pending" else None,
            "last_status_code": row.last_status_code, "last_error": row.last_error,
            "created_at": iso(row.created_at_us), "delivered_at": iso(row.delivered_at_us)}
