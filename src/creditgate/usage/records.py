"""Writing usage records and their hourly rollups: one function for the API and the gateway.

Every record also adds to ``usage_rollup_hourly`` in the same transaction: per hour, per
dimension (total, model, project, key, each tag) and per meter (plus the pseudo-meters
``$credits`` and ``$events``). The rows of one batch are summed in memory first, so a batch of a
thousand similar records costs a few dozen upserts. Upserts add (``quantity + excluded``), which
is safe under concurrent writers on both SQLite and PostgreSQL; rows are written in key order so
that two writers never wait on each other in opposite orders.

The gateway stores a request's record in the transaction that books its charge but leaves the
rollups for later (``roll_up=False``): the record is flagged ``rollup_pending`` and
:func:`roll_up_pending` folds such records in afterwards, many at once, in a transaction of its
own that also clears their flag. Usage queries add the records still pending to what the
rollups hold, in the same snapshot, so they are exact at every moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import orjson
from sqlalchemy import Connection

from creditgate.storage.database import Database
from creditgate.storage.driver import Driver

HOUR_US: Final = 3_600_000_000
CREDITS_METER: Final = "$credits"
EVENTS_METER: Final = "$events"
NO_VALUE: Final = ""

_RECORD_COLUMNS: Final = ("org_id", "project_id", "key_id", "model", "meters", "tags", "credits", "at_us",
                          "latency_ms", "source", "event_id")
_PENDING_COLUMNS: Final = (*_RECORD_COLUMNS, "rollup_pending")
_PENDING_SELECT: Final = "id, org_id, project_id, key_id, model, meters, tags, credits, at_us"
# Records one roll-up pass folds in (and locks, on PostgreSQL); a longer backlog takes more passes.
ROLL_UP_RECORDS_MAX: Final = 5000
_ROLLUP_COLUMNS: Final = ("org_id", "dimension", "hour_us", "value", "meter", "quantity")
_ADD_ON_CONFLICT: Final = ("ON CONFLICT (org_id, dimension, hour_us, value, meter) "
                           "DO UPDATE SET quantity = usage_rollup_hourly.quantity + excluded.quantity")


class UsageRow(NamedTuple):
    """One metered request or usage event, as stored. ``credits`` is in micro-credits.

    A named tuple rather than a frozen dataclass: ingestion builds a thousand per request, and a
    tuple is built in a third of the time.
    """

    org_id: str
    model: str
    meters: Mapping[str, int]
    credits: int
    at_us: int
    project_id: str | None = None
    key_id: str | None = None
    tags: Mapping[str, str] = MappingProxyType({})
    latency_ms: int | None = None
    source: str | None = None
    event_id: str | None = None


def record_usage(database: Database, rows: Sequence[UsageRow]) -> None:
    """Store ``rows`` and their rollups in one transaction of their own."""
    if not rows:
        return
    with database.write() as connection:
        insert_usage(connection, rows)


def insert_usage(connection: Connection, rows: Sequence[UsageRow], *, roll_up: bool = True) -> None:
    """Store ``rows`` inside the caller's write transaction, with their rollups, or (``roll_up``
    false) flagged for :func:`roll_up_pending`."""
    if not rows:
        return
    sql = Driver(connection)
    records = [(row.org_id, row.project_id, row.key_id, row.model, _json(row.meters), _json(row.tags),
                row.credits, row.at_us, row.latency_ms, row.source, row.event_id) for row in rows]
    if not roll_up:
        sql.copy_rows("usage_records", _PENDING_COLUMNS, [(*record, 1) for record in records])
        return
    sql.copy_rows("usage_records", _RECORD_COLUMNS, records)
    sql.insert_rows("usage_rollup_hourly", _ROLLUP_COLUMNS, rollup_rows(rows), _ADD_ON_CONFLICT)


def roll_up_pending(connection: Connection, *, records_max: int = ROLL_UP_RECORDS_MAX) -> int:
    """Fold up to ``records_max`` records flagged ``rollup_pending`` into the hourly rollups and
    clear their flag, inside the caller's write transaction; answers how many were folded.

    On PostgreSQL the records are locked (``SKIP LOCKED``): several processes rolling up at once
    each take different records, and none is counted twice.
    """
    sql = Driver(connection)
    index, lock = (("", " FOR UPDATE SKIP LOCKED") if sql.postgres
                   else (" INDEXED BY ix_usage_records_rollup_pending", ""))
    found = sql.all(f"SELECT {_PENDING_SELECT} FROM usage_records{index} WHERE rollup_pending = 1 "
                    f"LIMIT ?{lock}", [records_max])
    if not found:
        return 0
    rows = [UsageRow(org_id=org_id, model=model, meters=orjson.loads(meters), credits=credits, at_us=at_us,
                     project_id=project_id, key_id=key_id, tags=orjson.loads(tags))
            for _, org_id, project_id, key_id, model, meters, tags, credits, at_us in found]
    sql.insert_rows("usage_rollup_hourly", _ROLLUP_COLUMNS, rollup_rows(rows), _ADD_ON_CONFLICT)
    sql.many("UPDATE usage_records SET rollup_pending = 0 WHERE id = ?", [(row[0],) for row in found])
    return len(found)


def roll_up_all_pending(database: Database) -> int:
    """Fold in every pending record, a transaction per ROLL_UP_RECORDS_MAX; answers how many."""
    total = 0
    while True:
        with database.write() as connection:
            folded = roll_up_pending(connection)
        total += folded
        if folded < ROLL_UP_RECORDS_MAX:
            return total


def rollup_rows(rows: Iterable[UsageRow]) -> list[tuple[str, str, int, str, str, int]]:
    """The rollup increments of ``rows``, summed and sorted by key."""
    # First fold records that share every dimension (the common case within one batch), then
    # spread each fold over the dimensions it counts towards.
    folds: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        hour = row.at_us - row.at_us % HOUR_US
        tags = tuple(sorted(row.tags.items())) if row.tags else ()
        key = (row.org_id, hour, row.model, row.project_id or NO_VALUE, row.key_id or NO_VALUE, tags)
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = [0, 0, {}]
        fold[0] += row.credits
        fold[1] += 1
        meters: dict[str, int] = fold[2]
        for meter, quantity in row.meters.items():
            meters[meter] = meters.get(meter, 0) + quantity
    increments: dict[tuple[str, str, int, str, str], int] = {}
    for (org_id, hour, model, project, key_id, tags), (credits, events, meters) in folds.items():
        dimensions = [("total", NO_VALUE), ("model", model), ("project", project), ("key", key_id)]
        dimensions.extend((f"tag:{name}", value) for name, value in tags)
        quantities = [(CREDITS_METER, credits), (EVENTS_METER, events), *meters.items()]
        for dimension, value in dimensions:
            for meter, quantity in quantities:
                slot = (org_id, dimension, hour, value, meter)
                increments[slot] = increments.get(slot, 0) + quantity
    return [(*slot, quantity) for slot, quantity in sorted(increments.items())]


def _json(value: Mapping[str, Any]) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value else "{}"
