"""Group commit on the event loop itself, for SQLite.

The operations that an event loop's tasks submit during one turn of the loop are committed
together, in one transaction, by a callback that runs at the end of that turn on the loop's own
thread. A request therefore waits for no other thread: no wake-up of the writer thread, no
wake-up back, and no waiting for the GIL while the writer runs Python. On SQLite a commit is
CPU work of tens of microseconds (WAL with ``synchronous=NORMAL`` does not fsync on commit), so
the loop spends that time on the commit instead of on the hand-offs around it.

Whenever the write cannot start at once (the writer thread is busy, or another process holds
SQLite's write lock) the operations go to the writer thread's queue instead, so the loop never
sleeps on a lock. On PostgreSQL everything goes to the writer thread.

An operation may come with ``defer_if``: asked when its batch is about to be committed, a yes
leaves the operation out and answers its caller :data:`DEFERRED` instead. The gateway uses it for
a hold whose upstream has answered by then: the hold is better committed together with its
settlement, one transaction instead of two (see ``Pipeline._reserve_during``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

from creditgate.ledger.group_commit import NOT_INLINE, GroupCommitWriter, settle_futures
from creditgate.ledger.operations import Operation

DEFERRED: Final = {"deferred": True}  # the answer to an operation left out by its defer_if


class LoopCommitter:
    """Collects one event loop's operations and commits them at the end of the loop's turn."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        # No reference to the loop itself: the ledger keeps one committer per loop in a
        # WeakKeyDictionary, and a value that referred to its key would keep every loop alive.
        self._writer = writer
        self._pending: list[tuple[Operation, asyncio.Future[dict[str, Any]], Callable[[], bool] | None]] = []

    def submit(self, operation: Operation, *,
               defer_if: Callable[[], bool] | None = None) -> asyncio.Future[dict[str, Any]]:
        """Called on the loop this committer belongs to."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending.append((operation, future, defer_if))
        if len(self._pending) == 1:
            # call_soon runs after the callbacks already ready in this turn: their operations
            # join this batch.
            loop.call_soon(self._commit)
        return future

    def _commit(self) -> None:
        pending, self._pending = self._pending, []
        batch: list[tuple[Operation, asyncio.Future[dict[str, Any]]]] = []
        for operation, future, defer_if in pending:
            if defer_if is not None and defer_if():
                if not future.done():
                    future.set_result(DEFERRED)
            else:
                batch.append((operation, future))
        if not batch:
            return
        outcomes = self._writer.try_inline_batch([operation for operation, _ in batch])
        if outcomes is NOT_INLINE:
            for operation, future in batch:
                self._writer.submit_async(operation, future)
            return
        settle_futures([(future, outcome) for (_, future), outcome in zip(batch, outcomes, strict=True)])
