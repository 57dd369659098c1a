"""Usage records of gateway requests, written in batches off the hot path.

The request path only appends a record to an in-memory list; the ledger's group-commit writer
stores the waiting records inside its next batch transaction (or, for a settled request, in the
transaction that books its charge). Their hourly rollups follow within a second (:class:`RollUps`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from creditgate.runtime import LazyThread

log = logging.getLogger(__name__)

BATCH_RECORDS_MAX: Final = 1000
ROLL_UP_DELAY_S: Final = 1.0
QUEUE_RECORDS_MAX: Final = 100_000
TAGS_MAX: Final = 32
TAG_LENGTH_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class UsageRecord:
    org_id: str
    key_id: str | None
    project_id: str | None
    deployment: str
    model: str
    meters: dict[str, int]
    tags: dict[str, str]
    latency_ms: int
    credits: int
    at_us: int
    status: str = "ok"  # ok, error, partial (stream cut short)
    details: dict[str, Any] = field(default_factory=dict)


def parse_tags(header: str | None, body: dict[str, Any]) -> dict[str, str]:
    """Tags from ``x-creditgate-tags: team=search,env=prod`` and the OpenAI ``user``/``metadata``."""
    tags: dict[str, str] = {}
    if header:
        for part in header.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if name:
                tags[name[:TAG_LENGTH_MAX]] = (value.strip() if sep else "true")[:TAG_LENGTH_MAX]
    user = body.get("user")
    if isinstance(user, str) and user:
        tags["user"] = user[:TAG_LENGTH_MAX]
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        for name, value in metadata.items():
            if isinstance(name, str) and isinstance(value, (str, int, bool)):
                tags[name[:TAG_LENGTH_MAX]] = str(value)[:TAG_LENGTH_MAX]
    return dict(list(tags.items())[:TAGS_MAX])


class LedgerBatchedRecorder:
    """Usage records written inside the ledger writer's own transactions.

    One process then has one writer to the database, so the ledger never waits for SQLite's
    write lock behind a second writer thread (that wait, with SQLite's sleeping busy handler,
    cost tens of milliseconds per request). Records ride in the batch that follows their
    request's settlement; a poke asks for one when nothing else is queued.
    """

    def __init__(self, writer: Any, write_rows: Callable[[Any, list[UsageRecord]], None], *,
                 written: Callable[[], None] = lambda: None) -> None:
        self._writer = writer
        self._write_rows = write_rows
        self._written = written  # told after each write (the roll-up thread's cue)
        self._lock = threading.Lock()
        self._waiting: list[UsageRecord] = []
        self._in_flight = 0
        # Requests between their settlement's commit and their record: flush() waits for them too.
        self._expected = 0
        self._idle = threading.Condition(self._lock)
        self.dropped = 0
        writer.add_side_writer(self, takes_operation_riders=True)

    def expect(self) -> None:
        """A record is coming (its request is settling); call before the settlement starts."""
        with self._lock:
            self._expected += 1

    def unexpect(self) -> None:
        with self._lock:
            self._expected -= 1
            if self._is_idle():
                self._idle.notify_all()

    def _is_idle(self) -> bool:
        return not self._waiting and not self._in_flight and self._expected == 0

    def record(self, usage: UsageRecord, *, expected: bool = False) -> None:
        with self._lock:
            if expected:
                self._expected -= 1
            if len(self._waiting) >= QUEUE_RECORDS_MAX:
                self.dropped += 1
                log.error("usage queue full: a usage record was dropped")
                return
            self._waiting.append(usage)
            first = len(self._waiting) == 1
        if first:
            self._writer.poke()

    # SideWriter protocol, called on the ledger writer's thread.
    def drain(self) -> list[Any]:
        with self._lock:
            items, self._waiting = self._waiting[:BATCH_RECORDS_MAX], self._waiting[BATCH_RECORDS_MAX:]
            self._in_flight += len(items)
            more = bool(self._waiting)
        if more:
            self._writer.poke()
        return items

    def write(self, connection: Any, items: list[Any]) -> None:
        self._write_rows(connection, items)
        self._written()

    def restore(self, items: list[Any]) -> None:
        with self._lock:
            self._waiting[:0] = items
            self._in_flight -= len(items)
        self._writer.poke()

    def committed(self) -> None:
        with self._lock:
            self._in_flight = 0
            if self._is_idle():
                self._idle.notify_all()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (tests, shutdown)."""
        with self._lock:
            if self._is_idle():
                return True
        self._writer.poke()
        with self._lock:
            return self._idle.wait_for(self._is_idle, timeout_s)

    def close(self) -> None:
        self.flush()


class RollUps:
    """Folds the gateway's records into the hourly rollups on a thread of its own, about once a
    second while requests come, in transactions of their own.

    A request's record is stored with its charge, but its rollups (some twenty-five upserts)
    would have made that commit, which the client waits for, a third longer; here one pass folds
    a second's worth of records at once, into as many upserts as they have distinct keys. Usage
    queries are exact meanwhile (they add the pending records), and records left pending by a
    process that died are folded in by the next pass of any process (the server's housekeeping
    runs one too).
    """

    def __init__(self, database: Any) -> None:
        self._database = database
        self._wanted = threading.Event()
        self._thread = LazyThread("creditgate-usage-rollups", self._run)

    def wake(self) -> None:
        """Records with pending rollups were written: fold them in within ROLL_UP_DELAY_S."""
        self._thread.start()
        self._wanted.set()

    def run_once(self) -> int:
        """Fold in every pending record now; answers how many."""
        from creditgate.usage.records import roll_up_all_pending

        return roll_up_all_pending(self._database)

    def close(self) -> None:
        """Stop the thread after a last pass."""
        self._thread.stop(self._wanted.set)

    def _run(self) -> None:
        stopping = self._thread.stopping
        while True:
            self._wanted.wait()
            stopping.wait(ROLL_UP_DELAY_S)  # gather a second's worth (cut short on close)
            self._wanted.clear()
            try:
                self.run_once()
            except Exception:
                # The records stay pending (queries still count them); the next pass retries.
                log.exception("rolling up usage records failed")
            if stopping.is_set():
                return


def write_usage_rows(connection: Any, batch: list[UsageRecord]) -> None:
    """Store gateway records inside the caller's transaction (the one that books their charges);
    their hourly rollups are left to :class:`RollUps`, off the request's path."""
    from creditgate.usage.records import UsageRow, insert_usage

    insert_usage(connection, [
        UsageRow(org_id=record.org_id, model=record.model, meters=stored_meters(record), credits=record.credits,
                 at_us=record.at_us, project_id=record.project_id, key_id=record.key_id,
                 tags=stored_tags(record), latency_ms=record.latency_ms, source="gateway")
        for record in batch], roll_up=False)


def stored_tags(record: UsageRecord) -> dict[str, str]:
    """The client's tags and the gateway's own, which take precedence over a client's tag of the
    same name: ``deployment`` (its id), ``status`` (ok, partial or error) and, for a request that
    failed or broke off, ``error`` (the code of what ended it). Usage queries group by any of them
    (``group_by=tag:status``)."""
    tags = {**record.tags, "deployment": record.deployment, "status": record.status}
    error = record.details.get("error")
    if error:
        tags["error"] = str(error)[:TAG_LENGTH_MAX]  # an upstream's own code may be of any length
    return tags


def stored_meters(record: UsageRecord) -> dict[str, int]:
    """The metered quantities, and the micro-credits of a charge that could not be collected
    (``uncollected_credits``: an upstream reported more than was held and the organization's
    overdraft could not cover the excess). ``record.credits`` is the full price either way."""
    uncollected = record.details.get("uncollected")
    if uncollected:
        return {**record.meters, "uncollected_credits": int(uncollected)}
    return record.meters
