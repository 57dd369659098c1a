"""Usage queries: credits and meter totals per time bucket, grouped by model, project, key,
meter and one tag, over a time range; as rows for JSON or as CSV.

Whole hours are read from ``usage_rollup_hourly`` when the grouping uses at most one dimension
besides ``meter`` (the rollups keep one dimension at a time), plus the records whose rollups are
still pending; partial hours at the edges of the range, and groupings by two or more dimensions,
are computed from ``usage_records``. Buckets are
in UTC.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy import Connection

from creditgate.clock import iso, to_us
from creditgate.errors import InvalidInput
from creditgate.ledger.credits import format_amount
from creditgate.storage.database import Database
from creditgate.storage.driver import Driver
from creditgate.usage.records import CREDITS_METER, EVENTS_METER, HOUR_US, NO_VALUE

DAY_US: Final = 24 * HOUR_US
BUCKETS: Final = ("hour", "day", "month")
DIMENSIONS: Final = ("model", "project", "key", "meter")
GROUPS_MAX: Final = 4
RANGE_DAYS_MAX: Final = 400
ROWS_MAX: Final = 100_000
_COLUMN: Final = {"model": "model", "project": "project_id", "key": "key_id"}

Totals = dict[str, int]


@dataclass(frozen=True, slots=True)
class UsageQuery:
    org_id: str
    start_us: int
    end_us: int
    bucket: str = "day"
    group_by: tuple[str, ...] = ()
    project_id: str | None = None

    def __post_init__(self) -> None:
        if self.bucket not in BUCKETS:
            raise InvalidInput(f"bucket must be one of {', '.join(BUCKETS)}", param="bucket")
        if not self.start_us < self.end_us:
            raise InvalidInput("start must be before end", param="start")
        if self.end_us - self.start_us > RANGE_DAYS_MAX * DAY_US:
            raise InvalidInput(f"the range may span at most {RANGE_DAYS_MAX} days", param="start")
        if len(self.group_by) > GROUPS_MAX or len(set(self.group_by)) != len(self.group_by):
            raise InvalidInput(f"group_by: at most {GROUPS_MAX} distinct dimensions", param="group_by")
        for name in self.group_by:
            if name not in DIMENSIONS and not (name.startswith("tag:") and 4 < len(name) <= 68):
                raise InvalidInput(f"group_by: {name[:70]!r} is not one of model, project, key, "
                                   "meter or tag:<name>", param="group_by")


def run_query(database: Database, query: UsageQuery) -> list[dict[str, Any]]:
    """The result rows, ordered by bucket then group."""
    dimensions = tuple(name for name in query.group_by if name != "meter")
    sums: dict[tuple[int, tuple[str, ...]], Totals] = {}
    first_hour = -(-query.start_us // HOUR_US) * HOUR_US
    last_hour = query.end_us - query.end_us % HOUR_US
    with database.read() as connection:
        if _rollups_serve(query, dimensions) and first_hour < last_hour:
            _from_rollups(connection, query, dimensions, first_hour, last_hour, sums)
            # Records whose rollups are still pending (recent gateway requests), from the same
            # snapshot: never in both, never in neither.
            _from_records(connection, query, dimensions, first_hour, last_hour, sums, pending_only=True)
            for start, end in ((query.start_us, first_hour), (last_hour, query.end_us)):
                if start < end:
                    _from_records(connection, query, dimensions, start, end, sums)
        else:
            _from_records(connection, query, dimensions, query.start_us, query.end_us, sums)
    return _rows(query, dimensions, sums)


def _rollups_serve(query: UsageQuery, dimensions: tuple[str, ...]) -> bool:
    if query.project_id is not None:
        return set(dimensions) <= {"project"}
    return len(dimensions) <= 1


def _bucket(query: UsageQuery, at_us: int) -> int:
    if query.bucket == "hour":
        return at_us - at_us % HOUR_US
    day = at_us - at_us % DAY_US
    if query.bucket == "day":
        return day
    moment = datetime.fromtimestamp(day // 1_000_000, tz=UTC)
    return to_us(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def _add(sums: dict[tuple[int, tuple[str, ...]], Totals], key: tuple[int, tuple[str, ...]],
         meter: str, quantity: int) -> None:
    totals = sums.get(key)
    if totals is None:
        totals = sums[key] = {}
    totals[meter] = totals.get(meter, 0) + quantity


def _from_rollups(connection: Connection, query: UsageQuery, dimensions: tuple[str, ...],
                  start_us: int, end_us: int, sums: dict[tuple[int, tuple[str, ...]], Totals]) -> None:
    driver = Driver(connection)
    dimension = dimensions[0] if dimensions else ("project" if query.project_id else "total")
    step = HOUR_US if query.bucket == "hour" else DAY_US
    params: list[Any] = [query.org_id, dimension, start_us, end_us]
    value_filter = ""
    if query.project_id is not None:
        value_filter, params = " AND value = ?", [*params, query.project_id]
    rows = driver.all(
        f"SELECT {_bucket_sql(step)} AS bucket, value, meter, {_sum_sql(step)} FROM usage_rollup_hourly "
        f"WHERE org_id = ? AND dimension = ? AND hour_us >= ? AND hour_us < ?{value_filter}"
        f"{_group_sql(step, 'value, meter')}", params)
    keep_value = bool(dimensions)
    monthly = query.bucket == "month"
    for bucket, value, meter, quantity in rows:
        key = (_bucket(query, bucket) if monthly else bucket, (value,) if keep_value else ())
        totals = sums.get(key)
        if totals is None:
            totals = sums[key] = {}
        totals[meter] = totals.get(meter, 0) + int(quantity)
    if dimension.startswith("tag:"):
        _untagged(driver, query, start_us, end_us, step, sums)


def _untagged(driver: Driver, query: UsageQuery, start_us: int, end_us: int, step: int,
              sums: dict[tuple[int, tuple[str, ...]], Totals]) -> None:
    """Records without the tag: the total minus the tagged sums, grouped under no value."""
    totals: dict[int, Totals] = {}
    for bucket, meter, quantity in driver.all(
            f"SELECT {_bucket_sql(step)} AS bucket, meter, {_sum_sql(step)} FROM usage_rollup_hourly "
            "WHERE org_id = ? AND dimension = 'total' AND hour_us >= ? AND hour_us < ?"
            f"{_group_sql(step, 'meter')}", [query.org_id, start_us, end_us]):
        slot = totals.setdefault(_bucket(query, bucket), {})
        slot[meter] = slot.get(meter, 0) + int(quantity)
    for (bucket, values), tagged in list(sums.items()):
        if values != (NO_VALUE,) and bucket in totals:
            for meter, quantity in tagged.items():
                totals[bucket][meter] = totals[bucket].get(meter, 0) - quantity
    for bucket, rest in totals.items():
        if rest.get(EVENTS_METER, 0) > 0:
            for meter, quantity in rest.items():
                if quantity:
                    _add(sums, (bucket, (NO_VALUE,)), meter, quantity)


# Hourly buckets are the rollup rows themselves (one per key of the table's primary key), so
# they are read in index order without grouping; coarser buckets are summed by the database.
def _bucket_sql(step: int) -> str:
    return "hour_us" if step == HOUR_US else f"(hour_us / {step}) * {step}"


def _sum_sql(step: int) -> str:
    return "quantity" if step == HOUR_US else "SUM(quantity)"


def _group_sql(step: int, columns: str) -> str:
    return "" if step == HOUR_US else f" GROUP BY bucket, {columns}"


def _from_records(connection: Connection, query: UsageQuery, dimensions: tuple[str, ...],
                  start_us: int, end_us: int, sums: dict[tuple[int, tuple[str, ...]], Totals], *,
                  pending_only: bool = False) -> None:
    driver = Driver(connection)
    params: list[Any] = [query.org_id, start_us, end_us]
    project_filter = ""
    if query.project_id is not None:
        project_filter, params = " AND project_id = ?", [*params, query.project_id]
    if pending_only:
        project_filter += " AND rollup_pending = 1"  # ix_usage_records_rollup_pending
    rows = driver.all(
        "SELECT at_us, model, project_id, key_id, meters, tags, credits FROM usage_records "
        f"WHERE org_id = ? AND at_us >= ? AND at_us < ?{project_filter}", params)
    for at_us, model, project_id, key_id, meters, tags, credits in rows:
        fields = {"model": model, "project": project_id or NO_VALUE, "key": key_id or NO_VALUE}
        tag_map = orjson.loads(tags) if any(name.startswith("tag:") for name in dimensions) else {}
        values = tuple(fields[name] if name in fields else str(tag_map.get(name[4:], NO_VALUE))
                       for name in dimensions)
        key = (_bucket(query, at_us), values)
        _add(sums, key, CREDITS_METER, credits)
        _add(sums, key, EVENTS_METER, 1)
        for meter, quantity in orjson.loads(meters).items():
            _add(sums, key, meter, quantity)


def _rows(query: UsageQuery, dimensions: tuple[str, ...],
          sums: dict[tuple[int, tuple[str, ...]], Totals]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    by_meter = "meter" in query.group_by
    bucket_names: dict[int, str | None] = {}  # each bucket repeats once per group
    for (bucket, values), totals in sorted(sums.items()):
        name = bucket_names.get(bucket)
        if name is None:
            name = bucket_names[bucket] = iso(bucket)
        base: dict[str, Any] = {"bucket_start": name}
        base.update({name: (value or None) for name, value in zip(dimensions, values, strict=True)})
        meters = {name: quantity for name, quantity in sorted(totals.items()) if not name.startswith("$")}
        if by_meter:
            rows.extend({**base, "meter": name, "quantity": quantity} for name, quantity in meters.items())
        else:
            rows.append({**base, "credits": format_amount(totals.get(CREDITS_METER, 0)),
                         "events": totals.get(EVENTS_METER, 0), "meters": meters})
        if len(rows) > ROWS_MAX:
            raise InvalidInput(f"the answer has more than {ROWS_MAX} rows: use a larger bucket or "
                               "a shorter range", param="bucket")
    return rows


def totals_of(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Credits, events and meter totals over all rows (meter rows only add to meters)."""
    from creditgate.ledger.credits import parse_amount

    credits = events = 0
    meters: dict[str, int] = {}
    for row in rows:
        if "meter" in row and "quantity" in row:
            meters[row["meter"]] = meters.get(row["meter"], 0) + row["quantity"]
            continue
        credits += parse_amount(row["credits"])
        events += row["events"]
        for name, quantity in row["meters"].items():
            meters[name] = meters.get(name, 0) + quantity
    return {"credits": format_amount(credits), "events": events, "meters": meters}


def to_csv(query: UsageQuery, rows: list[dict[str, Any]]) -> str:
    dimensions = [name for name in query.group_by if name != "meter"]
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\n")
    if "meter" in query.group_by:
        writer.writerow(["bucket_start", *dimensions, "meter", "quantity"])
        for row in rows:
            writer.writerow([row["bucket_start"], *(row[d] or "" for d in dimensions), row["meter"],
                             row["quantity"]])
        return output.getvalue()
    meter_names = sorted({name for row in rows for name in row["meters"]})
    writer.writerow(["bucket_start", *dimensions, "credits", "events", *meter_names])
    for row in rows:
        writer.writerow([row["bucket_start"], *(row[d] or "" for d in dimensions), row["credits"],
                         row["events"], *(row["meters"].get(name, 0) for name in meter_names)])
    return output.getvalue()
