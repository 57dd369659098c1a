"""A single writer per process that commits ledger operations in groups.

Callers hand operations to a queue; one thread takes everything waiting (up to a limit), applies
it in order inside one database transaction, commits, and only then answers each caller. Each
caller is acknowledged after its write is durable, and one commit pays for many operations, as in
TigerBeetle's group commit. Between processes the database's own lock (SQLite's write lock,
PostgreSQL row locks on the organizations touched) serializes batches, and every batch re-reads
the state it decides on, so several processes keep the same guarantees as one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Final, Protocol

from sqlalchemy.exc import DBAPIError, OperationalError

from creditgate.clock import Clock
from creditgate.errors import CreditgateError, IdempotencyConflict, NotFound
from creditgate.ledger import journal
from creditgate.ledger.operations import Operation
from creditgate.storage import ledger_store
from creditgate.storage.database import Database, WriteBusy

BATCH_OPERATIONS_MAX: Final = 1024
CACHED_BOOKS_MAX: Final = 100_000
BATCH_RETRIES_MAX: Final = 20
RETRY_BACKOFF_S: Final = 0.005

log = logging.getLogger(__name__)
_STOP: Final = object()
_FLUSH: Final = object()
NOT_INLINE: Final = object()


class SideWriter(Protocol):
    """Rows that ride along in the ledger's batches (usage records), so that one process never
    has two writers competing for SQLite's write lock."""

    def drain(self) -> list[Any]: ...
    def write(self, connection: Any, items: list[Any]) -> None: ...
    def restore(self, items: list[Any]) -> None: ...
    def committed(self) -> None: ...


class GroupCommitWriter:
    def __init__(self, database: Database, clock: Clock, *, batch_max: int = BATCH_OPERATIONS_MAX) -> None:
        assert 1 <= batch_max <= BATCH_OPERATIONS_MAX
        self._database = database
        self._clock = clock
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="creditgate-ledger-writer", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()
        self.batches = 0
        self.operations = 0
        # Books of recently written organizations, reused while their organization row is
        # unchanged (see ledger_store.load_books). Only this writer's thread touches it.
        self._books: dict[str, Any] = {}
        self._side_writers: list[SideWriter] = []
        self._rider_writer: SideWriter | None = None
        # Whoever commits a batch holds this: the writer thread, or a caller running one
        # loop's operations inline (see try_inline_batch). It also guards the book cache.
        self._batch_lock = threading.Lock()
        self.inline_enabled = database.is_sqlite

    def add_side_writer(self, side_writer: SideWriter, *, takes_operation_riders: bool = False) -> None:
        """Register rows to write inside the ledger's transactions. With
        ``takes_operation_riders`` the side writer also stores what operations' ``rider`` returns,
        atomically with the operation itself (a request's usage record with its charge)."""
        self._side_writers.append(side_writer)
        if takes_operation_riders:
            assert self._rider_writer is None
            self._rider_writer = side_writer

    def poke(self) -> None:
        """Ask for a batch soon even if no operation is waiting (side writers have rows)."""
        self._ensure_started()
        self._queue.put(_FLUSH)

    def submit(self, operation: Operation) -> Future[dict[str, Any]]:
        """Queue an operation for a thread that will wait on the returned future."""
        self._ensure_started()
        future: Future[dict[str, Any]] = Future()
        self._queue.put((operation, future, None))
        return future

    def submit_async(self, operation: Operation,
                     future: asyncio.Future[dict[str, Any]] | None = None) -> asyncio.Future[dict[str, Any]]:
        """Queue an operation from a running event loop; await the returned future (``future``
        itself, when the caller already made one on this loop).

        The writer answers all of a loop's operations in a batch with one wake-up of that loop,
        instead of one cross-thread wake-up per operation.
        """
        self._ensure_started()
        loop = asyncio.get_running_loop()
        if future is None:
            future = loop.create_future()
        self._queue.put((operation, future, loop))
        return future

    def try_inline_batch(self, operations: list[Operation]) -> Any:
        """Commit ``operations`` in one transaction on the calling thread if nothing else is
        being written; their outcomes (a result or an exception each), or ``NOT_INLINE`` to say
        "queue them instead".

        For an event loop (see :mod:`creditgate.ledger.loop_commit`): it skips two cross-thread
        wake-ups (to the writer and back) and the writer thread's turns at the GIL, which on a
        two-core machine cost more than the commit itself. Only on SQLite, where a commit takes a
        fraction of a millisecond and never waits: a lock held by another thread or process sends
        the operations to the queue instead. Callers are answered after the commit, exactly as
        from the queue.
        """
        if not self.inline_enabled or not self._queue.empty():
            return NOT_INLINE
        if not self._batch_lock.acquire(blocking=False):
            return NOT_INLINE
        try:
            outcomes = self._commit(operations, inline=True)
        except WriteBusy:
            return NOT_INLINE
        finally:
            self._batch_lock.release()
        assert outcomes is not None
        self.batches += 1
        self.operations += len(operations)
        return outcomes

    def _ensure_started(self) -> None:
        if not self._started:
            with self._start_lock:
                if not self._started:
                    self._thread.start()
                    self._started = True

    def close(self) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [] if first is _FLUSH else [first]
            stop = False
            while len(batch) < self._batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                if item is not _FLUSH:
                    batch.append(item)
            self._process(batch)
            if stop:
                self._process([])  # what side writers still hold
                return

    def _process(self, batch: list[tuple[Operation, Any, Any]]) -> None:
        operations = [operation for operation, _, _ in batch]
        with self._batch_lock:
            outcomes = self._commit(operations)
        if outcomes is None:
            return
        self.batches += 1
        self.operations += len(batch)
        by_loop: dict[Any, list[tuple[Any, Any]]] = {}
        for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
            if loop is None:
                settle_future(future, outcome)
            else:
                by_loop.setdefault(loop, []).append((future, outcome))
        for loop, settled in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle_futures, settled)
            except RuntimeError:  # the loop was closed while its operations were in flight
                pass


    def _commit(self, operations: list[Operation], *, with_riders: bool = True,
                inline: bool = False) -> list[Any] | None:
        """Apply and commit ``operations`` (and what side writers hold); an outcome for each.

        Lock timeouts, deadlocks and "database is locked" are retried with a growing pause. Any
        other database error (say a value a column refuses) fails the batch's transaction; then
        each operation is tried alone, so that one bad operation does not sink the others.
        """
        for attempt in range(BATCH_RETRIES_MAX):
            riders = [(side, side.drain()) for side in self._side_writers] if with_riders else []
            riders = [(side, items) for side, items in riders if items]
            if not operations and not riders:
                return None
            try:
                with self._database.write(wait=not inline, pipelined=True) as connection:
                    outcomes, books = apply_batch_cached(connection, operations, self._clock.now_us(),
                                                         lock=not self._database.is_sqlite, cache=self._books)
                    for side, items in riders:
                        side.write(connection, items)
                    if self._rider_writer is not None:
                        carried = [row for op, outcome in zip(operations, outcomes, strict=True)
                                   if not isinstance(outcome, BaseException)
                                   and (row := op.rider(outcome)) is not None]
                        if carried:
                            self._rider_writer.write(connection, carried)
                self._remember(books)
                for side, _ in riders:
                    side.committed()
                return outcomes
            except BaseException as error:
                # Nothing of the batch stands: its changes to cached books and its riders' rows
                # went with the rolled-back transaction.
                self._books.clear()
                for side, items in riders:
                    side.restore(items)
                if isinstance(error, WriteBusy):
                    raise
                if not isinstance(error, _DATABASE_ERRORS):
                    # A bug, or a value that got past every check: fail loudly, but only the
                    # operation that raised it, not every caller whose operation shared its batch.
                    log.exception("ledger batch failed")
                    if len(operations) > 1:
                        return [self._alone(operation) for operation in operations]
                    return [error]
                if _retryable(error):
                    if inline:
                        raise WriteBusy() from error
                    if attempt + 1 < BATCH_RETRIES_MAX:
                        time.sleep(RETRY_BACKOFF_S * (attempt + 1))
                        continue
                if len(operations) > 1:
                    log.warning("ledger batch failed (%s); applying its operations one by one", error)
                    return [self._alone(operation) for operation in operations]
                return [error] * len(operations)
        raise AssertionError("unreachable")

    def _alone(self, operation: Operation) -> Any:
        outcomes = self._commit([operation], with_riders=False)
        assert outcomes is not None
        return outcomes[0]

    def _remember(self, books: dict[str, Any]) -> None:
        if len(self._books) + len(books) > CACHED_BOOKS_MAX:
            self._books.clear()
        for org_id, book in books.items():
            book.settle()
            self._books[org_id] = book


def settle_future(future: Any, outcome: Any) -> None:
    """Answer a caller's future with its operation's outcome (a result or an exception)."""
    if future.done():  # an awaiting task was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def settle_futures(settled: list[tuple[Any, Any]]) -> None:
    for future, outcome in settled:
        settle_future(future, outcome)


def _database_errors() -> tuple[type[BaseException], ...]:
    # The hot path talks to the drivers directly, so their own exception types arrive here too.
    errors: list[type[BaseException]] = [OperationalError, DBAPIError, sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    return tuple(errors)


_DATABASE_ERRORS: Final = _database_errors()


def _retryable(error: BaseException) -> bool:
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).lower()
    return any(word in text for word in ("locked", "deadlock", "could not serialize", "lock timeout",
                                         "busy", "serialization"))


def apply_batch(connection: Any, operations: Sequence[Operation], now_us: int, *, lock: bool) -> list[Any]:
    """Apply operations in order inside the caller's transaction; a result or error for each.

    For callers that must write other rows atomically with the ledger operations (usage
    ingestion writes its dedup rows in the same transaction).
    """
    outcomes, _ = apply_batch_cached(connection, operations, now_us, lock=lock, cache=None)
    return outcomes


def apply_batch_cached(connection: Any, operations: Sequence[Operation], now_us: int, *, lock: bool,
                       cache: dict[str, Any] | None) -> tuple[list[Any], dict[str, Any]]:
    """Apply operations in order against current books; the outcomes and the books used."""
    if not operations:
        return [], {}
    hold_ids = [hold_id for op in operations for hold_id in op.hold_ids()]
    grant_ids = [grant_id for op in operations for grant_id in op.grant_ids()]
    books = ledger_store.load_books(connection, {op.org_id for op in operations}, hold_ids=hold_ids,
                                    grant_ids=grant_ids, now_us=now_us, lock=lock, cache=cache)
    # Only now, holding the organizations' locks: on PostgreSQL a retry committed by another
    # process just before is then visible, and is replayed instead of written again.
    keys = {(op.org_id, op.idempotency_key) for op in operations if op.idempotency_key}
    replays = ledger_store.find_replays(connection, keys)
    for loaded in books.values():
        loaded.expire_due_holds(now_us)
    seen: dict[tuple[str, str], tuple[str, str, Any]] = {}
    outcomes: list[Any] = []
    for op in operations:
        book = books.get(op.org_id)
        if book is None:
            outcomes.append(NotFound(f"organization {op.org_id} not found", param="org_id"))
            continue
        fingerprint = journal.fingerprint(op.kind, op.params()) if op.idempotency_key else None
        if op.idempotency_key:
            pair = (op.org_id, op.idempotency_key)
            earlier = seen.get(pair)
            if earlier is None and pair in replays:
                row = replays[pair]
                earlier = (row.kind, row.fingerprint, _loads(row.result))
            if earlier is not None:
                kind, earlier_fingerprint, result = earlier
                if (kind, earlier_fingerprint) != (op.kind, fingerprint):
                    outcomes.append(IdempotencyConflict(
                        f"idempotency key {op.idempotency_key!r} was already used with different inputs",
                        param="idempotency_key"))
                else:
                    outcomes.append({**result, "replayed": True})
                continue
        try:
            result = op.apply(book, now_us, fingerprint)
        except CreditgateError as error:
            outcomes.append(error)
            continue
        if op.idempotency_key:
            seen[(op.org_id, op.idempotency_key)] = (op.kind, fingerprint or "", result)
        outcomes.append(result)
    ledger_store.save_books(connection, books.values())
    return outcomes, books


def _loads(text: str) -> Any:
    import orjson

    return orjson.loads(text)
