"""Usage records of gateway requests, written in batches off the hot path.

The request path only appends a record to an in-memory queue; one thread drains it every
``flush_interval_s`` (or when ``batch_records_max`` are waiting) and hands the batch to the REST
API's usage writer (``creditgate.api.usage``), which also maintains the hourly rollups. When that
writer is not installed, rows go straight into ``usage_records``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import orjson

log = logging.getLogger(__name__)

BATCH_RECORDS_MAX: Final = 1000
FLUSH_INTERVAL_S: Final = 0.05
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


Sink = Callable[[list[UsageRecord]], None]


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


class UsageRecorder:
    def __init__(self, sink: Sink, *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._sink = sink
        self._flush_interval_s = flush_interval_s
        self._queue: queue.Queue[UsageRecord | None] = queue.Queue(maxsize=QUEUE_RECORDS_MAX)
        self._thread = threading.Thread(target=self._run, name="creditgate-usage-writer", daemon=True)
        self._thread.start()
        self._idle = threading.Event()
        self._idle.set()
        self.dropped = 0

    def record(self, usage: UsageRecord) -> None:
        try:
            self._idle.clear()
            self._queue.put_nowait(usage)
        except queue.Full:
            # Credits are already settled in the ledger; only the detail row is lost.
            self.dropped += 1
            log.error("usage queue full: a usage record was dropped")

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything recorded so far is written (tests, shutdown)."""
        return self._queue.unfinished_tasks == 0 or self._wait_idle(timeout_s)

    def _wait_idle(self, timeout_s: float) -> bool:
        import time

        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._queue.unfinished_tasks == 0

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[UsageRecord] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < BATCH_RECORDS_MAX:
                try:
                    item = self._queue.get(timeout=self._flush_interval_s if len(batch) < 16 else 0)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            if batch:
                try:
                    self._sink(batch)
                except Exception:
                    log.exception("writing %d usage records failed", len(batch))
            for _ in range(len(batch) + (1 if stop else 0)):
                self._queue.task_done()
            if stop:
                return


def table_sink(database: Any) -> Sink:
    """Write straight into ``usage_records`` (used when the API's usage writer is absent)."""
    from sqlalchemy import insert

    from creditgate.storage.tables_api import usage_records

    def write(batch: list[UsageRecord]) -> None:
        rows = [{"org_id": record.org_id, "project_id": record.project_id, "key_id": record.key_id,
                 "model": record.model, "meters": orjson.dumps(record.meters).decode(),
                 "tags": orjson.dumps({**record.tags, "deployment": record.deployment}).decode(),
                 "credits": record.credits, "at_us": record.at_us, "latency_ms": record.latency_ms,
                 "source": "gateway", "event_id": None} for record in batch]
        with database.write() as connection:
            connection.execute(insert(usage_records), rows)

    return write


def as_dict(record: UsageRecord) -> dict[str, Any]:
    return asdict(record)
