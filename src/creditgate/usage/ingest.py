"""Ingesting a batch of usage events: check, deduplicate, price, debit, record — in one transaction.

Pipeline of :func:`ingest_batch`:

1. **check** each event (:mod:`creditgate.usage.events`) and the caller's right to its subject;
2. **resolve** the organizations, projects and keys named by the batch (one read);
3. **price** each event with the rate card version in force at the event's ``time``;
4. in one write transaction: **claim** each event's (source, id) in ``usage_event_keys`` (a
   unique key: a claimed pair is a duplicate, never charged twice), **debit** the ledger, release
   the claims of events that were refused, and **record** the accepted events with their rollups.

Debits are summed per (organization, scope, model) within a batch and booked as one ledger debit
each, in burn-down order, with the per-event detail in ``usage_records``; a group that does not
fit is retried event by event, so that exactly the events that fit are accepted. Because claims,
debits and records commit together, a crash leaves either all of a batch or none of it.

Late events: an event may be up to ``LATE_EVENT_WINDOW_S`` old (and at most
``FUTURE_SKEW_S`` ahead of the server clock). It is priced with the card in force at its own
time, debited from the grants live at ingestion, and counted in the usage hour of its time.
Older events are rejected (``too_old``): the window is shorter than the deduplication retention
(``DEDUP_RETENTION_S``), so that no duplicate can slip in after its claim was pruned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, OperationalError

from creditgate.errors import CreditgateError, InsufficientCredits, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.budgets import subjects_of
from creditgate.ledger.credits import format_amount
from creditgate.ledger.group_commit import apply_batch
from creditgate.ledger.operations import Debit
from creditgate.storage.database import Database
from creditgate.storage.driver import Driver
from creditgate.storage.schema import orgs, projects
from creditgate.storage.tables_api import api_keys
from creditgate.usage.events import Rejected, UsageEvent, parse_event
from creditgate.usage.records import UsageRow, insert_usage

LATE_EVENT_WINDOW_S: Final = 30 * 86_400
FUTURE_SKEW_S: Final = 300
DEDUP_RETENTION_S: Final = 35 * 86_400
DEDUP_PRUNE_ROWS_MAX: Final = 10_000
WRITE_RETRIES_MAX: Final = 10
RETRY_BACKOFF_S: Final = 0.01
assert LATE_EVENT_WINDOW_S + FUTURE_SKEW_S < DEDUP_RETENTION_S
_CLAIM_COLUMNS: Final = ("org_id", "source", "event_id", "received_at_us")


@dataclass(frozen=True, slots=True)
class Caller:
    """Whose events these may be: None for an admin, else one organization (and project)."""

    org_id: str | None
    project_id: str | None = None
    key_id: str | None = None

    @property
    def budget_subjects(self) -> tuple[str, ...]:
        """The budgets the caller's events count against, as the gateway's requests do: those of
        the key that sent them and of its project (refused by a hard one, like any debit).
        An admin reports for no key of its own, so no budget applies."""
        return subjects_of(self.key_id, self.project_id)


class _Priced:
    __slots__ = ("credits", "event", "index", "message", "reason")

    def __init__(self, index: int, event: UsageEvent, credits: int) -> None:
        self.index = index
        self.event = event
        self.credits = credits
        self.reason = ""
        self.message = ""


def ingest_batch(database: Database, engine: Any, raw_events: Sequence[Any], *, caller: Caller,
                 now_us: int, billing: Any = None) -> list[dict[str, Any]]:
    """Ingest ``raw_events``; answer one status per event, in order.

    With ``billing``, an event whose time falls in a closed billing period follows billing's
    late-usage policy (a grace window, then booked now or rejected; see
    ``creditgate.billing.late_usage``).
    """
    results: list[dict[str, Any] | None] = [None] * len(raw_events)
    events = _check(raw_events, caller, now_us, results)
    events = _resolve(database, events, results)
    if billing is not None:
        events = _apply_late_policy(billing, events, results)
    priced = _price(engine, events, results)
    if priced:
        _commit(database, priced, now_us, results, caller.budget_subjects)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def _status(raw: Any, status: str, **extra: Any) -> dict[str, Any]:
    identity = {"id": raw.get("id"), "source": raw.get("source")} if isinstance(raw, dict) else {}
    return {**identity, "status": status, **extra}


def _check(raw_events: Sequence[Any], caller: Caller, now_us: int,
           results: list[dict[str, Any] | None]) -> list[tuple[int, UsageEvent]]:
    checked = []
    seen: set[tuple[str, str, str]] = set()
    late_us, ahead_us = LATE_EVENT_WINDOW_S * 1_000_000, FUTURE_SKEW_S * 1_000_000
    memo: dict[Any, Any] = {}
    for index, raw in enumerate(raw_events):
        try:
            event = parse_event(raw, now_us=now_us, late_us=late_us, ahead_us=ahead_us, memo=memo)
            if caller.org_id is not None:
                if event.org_id != caller.org_id:
                    raise Rejected("forbidden", "subject: this key may only report its own organization's usage")
                if caller.project_id is not None:
                    if event.project_id not in (None, caller.project_id):
                        raise Rejected("forbidden", "subject: this key may only report its own project's usage")
                    event = event._replace(project_id=caller.project_id)
        except Rejected as rejected:
            results[index] = _status(raw, "rejected", reason=rejected.reason, message=rejected.message)
            continue
        claim = _claim_key(event)
        if claim in seen:
            results[index] = _status(raw, "duplicate")
            continue
        seen.add(claim)
        checked.append((index, event))
    return checked


def _resolve(database: Database, events: list[tuple[int, UsageEvent]],
             results: list[dict[str, Any] | None]) -> list[tuple[int, UsageEvent]]:
    """Reject events naming an organization, project or key that does not exist (or not there)."""
    org_ids = {event.org_id for _, event in events}
    project_ids = {event.project_id for _, event in events if event.project_id}
    key_ids = {event.key_id for _, event in events if event.key_id}
    if not org_ids:
        return events
    with database.read() as connection:
        known_orgs = {row[0] for row in connection.execute(select(orgs.c.id).where(orgs.c.id.in_(org_ids)))}
        project_orgs = dict(connection.execute(select(projects.c.id, projects.c.org_id).where(
            projects.c.id.in_(project_ids))).tuples().all()) if project_ids else {}
        key_orgs = dict(connection.execute(select(api_keys.c.id, api_keys.c.org_id).where(
            api_keys.c.id.in_(key_ids))).tuples().all()) if key_ids else {}
    kept = []
    for index, event in events:
        reason = None
        if event.org_id not in known_orgs:
            reason, message = "unknown_org", f"subject: organization {event.org_id} not found"
        elif event.project_id and project_orgs.get(event.project_id) != event.org_id:
            reason, message = "unknown_project", f"subject: project {event.project_id} not found"
        elif event.key_id and key_orgs.get(event.key_id) != event.org_id:
            reason, message = "unknown_key", f"subject: key {event.key_id} not found"
        if reason is not None:
            results[index] = {"id": event.event_id, "source": event.source, "status": "rejected",
                              "reason": reason, "message": message}
        else:
            kept.append((index, event))
    return kept


def _apply_late_policy(billing: Any, events: list[tuple[int, UsageEvent]],
                       results: list[dict[str, Any] | None]) -> list[tuple[int, UsageEvent]]:
    deciders: dict[str, Any] = {}
    kept = []
    for index, event in events:
        decide = deciders.get(event.org_id)
        if decide is None:
            decide = deciders[event.org_id] = billing.late_usage_decider(event.org_id)
        decision = decide(event.at_us)
        if not decision.accept:
            results[index] = {"id": event.event_id, "source": event.source, "status": "rejected",
                              "reason": decision.reason, "message": f"time: {decision.message}"}
        else:
            kept.append((index, event))
    return kept


def _price(engine: Any, events: list[tuple[int, UsageEvent]],
           results: list[dict[str, Any] | None]) -> list[_Priced]:
    priced = []
    for index, event in events:
        try:
            charge = engine.quote(event.model, event.meters, event.at_us, org=event.org_id)
        except CreditgateError as error:
            reason = "unknown_model" if isinstance(error, NotFound) else "invalid_field"
            results[index] = {"id": event.event_id, "source": event.source, "status": "rejected",
                              "reason": reason, "message": error.message}
            continue
        priced.append(_Priced(index, event, charge.credits))
    return priced


def _commit(database: Database, priced: list[_Priced], now_us: int,
            results: list[dict[str, Any] | None], budgets: tuple[str, ...]) -> None:
    for attempt in range(WRITE_RETRIES_MAX):
        outcome: dict[int, dict[str, Any]] = {}
        try:
            with database.write() as connection:
                _write(connection, priced, now_us, outcome, budgets, lock=not database.is_sqlite)
            break
        except (OperationalError, DBAPIError) as error:
            if attempt + 1 == WRITE_RETRIES_MAX or not _retryable(error):
                raise
            time.sleep(RETRY_BACKOFF_S * (attempt + 1))
    for index, status in outcome.items():
        results[index] = status


def _write(connection: Connection, priced: list[_Priced], now_us: int,
           outcome: dict[int, dict[str, Any]], budgets: tuple[str, ...], *, lock: bool) -> None:
    driver = Driver(connection)
    claimed = _claim(driver, priced, now_us)
    fresh = []
    for item in priced:
        if _claim_key(item.event) in claimed:
            fresh.append(item)
        else:
            outcome[item.index] = {"id": item.event.event_id, "source": item.event.source,
                                   "status": "duplicate"}
    refused = _debit(connection, fresh, now_us, budgets, lock=lock)
    if refused:
        driver.many("DELETE FROM usage_event_keys WHERE org_id = ? AND source = ? AND event_id = ?",
                    [_claim_key(item.event) for item in refused])
    refused_ids = {id(item) for item in refused}
    for item in refused:
        outcome[item.index] = {"id": item.event.event_id, "source": item.event.source,
                               "status": "rejected", "reason": item.reason, "message": item.message}
    accepted = [item for item in fresh if id(item) not in refused_ids]
    insert_usage(connection, [_row(item.event, item.credits) for item in accepted])
    shown: dict[int, str] = {}  # charges repeat within a batch; format each amount once
    for item in accepted:
        text = shown.get(item.credits)
        if text is None:
            text = shown[item.credits] = format_amount(item.credits)
        outcome[item.index] = {"id": item.event.event_id, "source": item.event.source,
                               "status": "accepted", "credits": text}


def _claim_key(event: UsageEvent) -> tuple[str, str, str]:
    """What makes an event a duplicate: its (source, id) within its organization. CloudEvents
    makes (source, id) unique per producer, and producers in different organizations choose their
    sources freely: one tenant's events must never make another's count as duplicates."""
    return (event.org_id, event.source, event.event_id)


def _claim(driver: Driver, priced: list[_Priced], now_us: int) -> set[tuple[str, str, str]]:
    """Insert each event's claim key; answer the keys this transaction inserted."""
    # Key order, so that two batches claiming overlapping keys never wait on each other in
    # opposite orders.
    ordered = sorted(priced, key=lambda item: _claim_key(item.event))
    rows = driver.insert_rows(
        "usage_event_keys", _CLAIM_COLUMNS,
        [(*_claim_key(item.event), now_us) for item in ordered],
        "ON CONFLICT (org_id, source, event_id) DO NOTHING RETURNING org_id, source, event_id")
    return {(row[0], row[1], row[2]) for row in rows}


def _debit(connection: Connection, fresh: list[_Priced], now_us: int, budgets: tuple[str, ...], *,
           lock: bool) -> list[_Priced]:
    """Debit ``fresh`` in burn-down order, counted against ``budgets`` (the sender's); answer the
    events refused (with reason and message)."""
    groups: dict[tuple[str, str, str], list[_Priced]] = {}
    for item in fresh:
        if item.credits > 0:
            groups.setdefault((item.event.org_id, item.event.scope, item.event.model), []).append(item)
    if not groups:
        return []
    ref = new_id("usage")
    keys = list(groups)
    operations = [Debit(org_id, None, amount=sum(item.credits for item in groups[(org_id, scope, model)]),
                        scope=scope, subjects=(model,), ref=ref, budget_subjects=budgets)
                  for org_id, scope, model in keys]
    results = apply_batch(connection, list(operations), now_us, lock=lock)
    retry: list[_Priced] = []
    refused: list[_Priced] = []
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, InsufficientCredits) and len(groups[key]) > 1:
            retry.extend(groups[key])
        elif isinstance(result, BaseException):
            refused.extend(_refuse(item, result) for item in groups[key])
    if retry:
        singles = [Debit(item.event.org_id, None, amount=item.credits, scope=item.event.scope,
                         subjects=(item.event.model,), ref=ref, budget_subjects=budgets)
                   for item in retry]
        for item, result in zip(retry, apply_batch(connection, singles, now_us, lock=lock), strict=True):
            if isinstance(result, BaseException):
                refused.append(_refuse(item, result))
    return refused


def _refuse(item: _Priced, error: BaseException) -> _Priced:
    if isinstance(error, InsufficientCredits):
        reason = "insufficient_credits"
    elif isinstance(error, NotFound):
        reason = "unknown_org"
    elif isinstance(error, CreditgateError):
        reason = error.code
    else:
        raise error
    item.reason = reason
    item.message = str(error)
    return item


def _row(event: UsageEvent, credits: int) -> UsageRow:
    return UsageRow(org_id=event.org_id, model=event.model, meters=event.meters, credits=credits,
                    at_us=event.at_us, project_id=event.project_id, key_id=event.key_id,
                    tags=event.tags, latency_ms=event.latency_ms, source=event.source,
                    event_id=event.event_id)


def prune_dedup(database: Database, now_us: int) -> int:
    """Forget claims older than the retention; answer how many (at most DEDUP_PRUNE_ROWS_MAX)."""
    cutoff = now_us - DEDUP_RETENTION_S * 1_000_000
    with database.write() as connection:
        driver = Driver(connection)
        rows = driver.all("SELECT org_id, source, event_id FROM usage_event_keys WHERE received_at_us < ? "
                          f"LIMIT {DEDUP_PRUNE_ROWS_MAX}", [cutoff])
        driver.many("DELETE FROM usage_event_keys WHERE org_id = ? AND source = ? AND event_id = ?",
                    [(row[0], row[1], row[2]) for row in rows])
    return len(rows)


def _retryable(error: DBAPIError) -> bool:
    text = str(error.orig if error.orig is not None else error).lower()
    return any(word in text for word in ("locked", "deadlock", "could not serialize", "busy",
                                         "serialization", "lock timeout"))

