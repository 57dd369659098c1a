"""Operations committed inline on the caller's event loop (GroupCommitWriter.try_inline_batch,
and creditgate.ledger.loop_commit, which batches one turn of the loop).

The inline path must give the same answers and the same durability as the writer thread, and
must step aside (never wait) whenever someone else holds the write lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from creditgate.errors import InsufficientCredits
from creditgate.ledger.credits import parse_amount as c
from creditgate.ledger.group_commit import NOT_INLINE
from creditgate.ledger.loop_commit import DEFERRED
from creditgate.ledger.operations import Post
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify
from creditgate.storage.database import Database
from creditgate.storage.migrate import upgrade


class Rows:
    """A side writer whose rows ride in the ledger's transactions (as usage records do)."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []
        self.written: list[Any] = []

    def drain(self) -> list[Any]:
        items, self.waiting = self.waiting, []
        return items

    def write(self, connection: Any, items: list[Any]) -> None:
        self.written.extend(items)

    def restore(self, items: list[Any]) -> None:
        self.waiting[:0] = items

    def committed(self) -> None:
        pass


@pytest.fixture
def sqlite_ledger(sqlite_url: str) -> Iterator[Ledger]:
    database = Database(sqlite_url)
    upgrade(database)
    ledger = Ledger(database)
    yield ledger
    ledger.close()
    database.dispose()


def test_inline_reserve_and_post_are_committed_before_they_answer(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("10"))

    async def pair() -> dict[str, Any]:
        hold = await ledger.execute_async(ledger.reserve_operation(org_id, c("4")), inline=True)
        # Another connection sees the hold at once: it was committed before the answer.
        assert ledger.balance(org_id).pending == c("4")
        return await ledger.execute_async(Post(org_id, None, hold_id=hold["hold_id"], actual=c("3")),
                                          inline=True)

    batches_before = ledger.writer.batches
    posted = asyncio.run(pair())
    assert (posted["posted"], posted["released"]) == (c("3"), c("1"))
    assert ledger.writer.batches == batches_before + 2
    balance = ledger.balance(org_id)
    assert (balance.available, balance.pending) == (c("7"), 0)
    assert verify(ledger.database).ok


def test_inline_errors_are_raised_like_queued_ones(ledger: Ledger) -> None:
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("1"))

    async def too_much() -> None:
        await ledger.execute_async(ledger.reserve_operation(org_id, c("2")), inline=True)

    with pytest.raises(InsufficientCredits) as raised:
        asyncio.run(too_much())
    assert raised.value.details["available"] == "1"
    assert ledger.balance(org_id).pending == 0


@pytest.mark.postgres
def test_postgres_never_commits_inline(postgres_url: str) -> None:
    database = Database(postgres_url)
    upgrade(database)
    ledger = Ledger(database)
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("1"))
    try:
        assert ledger.writer.try_inline_batch([ledger.reserve_operation(org_id, c("1"))]) is NOT_INLINE
        assert ledger.balance(org_id).pending == 0
    finally:
        ledger.close()
        database.dispose()


def test_inline_steps_aside_while_the_writer_thread_commits(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("5"))
    with ledger.writer._batch_lock:  # the writer thread is in the middle of a batch
        assert ledger.writer.try_inline_batch([ledger.reserve_operation(org_id, c("1"))]) is NOT_INLINE
    assert ledger.balance(org_id).pending == 0


def test_inline_never_waits_for_another_process_lock_and_writes_nothing(sqlite_url: str,
                                                                        sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    rows = Rows()
    ledger.writer.add_side_writer(rows)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        org_id = ledger.create_org("acme").id
        ledger.grant(org_id, c("5"))
        rows.waiting.append("usage-row")
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
        outcome = ledger.writer.try_inline_batch([ledger.reserve_operation(org_id, c("1"))])
        assert outcome is NOT_INLINE
        assert rows.waiting == ["usage-row"] and rows.written == []  # handed back, not lost
        other.execute("ROLLBACK")
        # Queued instead, the same operation then goes through (and takes the row along).
        ledger.execute(ledger.reserve_operation(org_id, c("1")))
        assert ledger.balance(org_id).available == c("4")
        assert rows.written == ["usage-row"]
    finally:
        other.close()


def test_operations_of_one_loop_turn_commit_together_each_with_its_own_outcome(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("5"))

    async def burst() -> list[Any]:
        operations = [ledger.reserve_operation(org_id, c("1")) for _ in range(7)]
        return await asyncio.gather(*(ledger.execute_async(op, inline=True) for op in operations),
                                    return_exceptions=True)

    batches_before = ledger.writer.batches
    outcomes = asyncio.run(burst())
    assert ledger.writer.batches == batches_before + 1  # one transaction for the whole turn
    held = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert (len(held), len(refused)) == (5, 2)
    assert ledger.balance(org_id).pending == c("5")
    assert verify(ledger.database).ok


def test_an_operation_deferred_at_commit_time_is_left_out_and_told_so(sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("5"))
    asked: list[str] = []

    def ask(answer: bool, name: str) -> Any:
        def defer_if() -> bool:
            asked.append(name)  # asked when the batch commits, not when submitted
            return answer
        return defer_if

    async def turn() -> list[Any]:
        submitted = [ledger.execute_async(ledger.reserve_operation(org_id, c("1")), inline=True,
                                          defer_if=ask(answer, name))
                     for answer, name in ((True, "deferred"), (False, "kept"))]
        tasks = [asyncio.ensure_future(each) for each in submitted]
        await asyncio.sleep(0)  # the tasks submit; the commit is at the end of this turn
        assert asked == []
        return await asyncio.gather(*tasks)

    batches_before = ledger.writer.batches
    deferred, kept = asyncio.run(turn())
    assert asked == ["deferred", "kept"]
    assert deferred is DEFERRED and "hold_id" in kept
    assert ledger.writer.batches == batches_before + 1
    assert ledger.balance(org_id).pending == c("1")  # only the kept hold was written
    assert verify(ledger.database).ok


def test_loop_commit_hands_over_to_the_writer_when_another_process_writes(sqlite_url: str,
                                                                          sqlite_ledger: Ledger) -> None:
    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("5"))
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)

    async def while_locked() -> dict[str, Any]:
        other.execute("BEGIN IMMEDIATE")  # another process holds SQLite's write lock
        task = asyncio.ensure_future(ledger.execute_async(ledger.reserve_operation(org_id, c("2")),
                                                          inline=True))
        for _ in range(3):
            await asyncio.sleep(0)  # the loop's turn ends: its commit finds the lock taken
        assert not task.done()  # queued for the writer thread, which waits for the lock
        assert ledger.balance(org_id).pending == 0
        other.execute("ROLLBACK")
        return await task

    try:
        result = asyncio.run(while_locked())
    finally:
        other.close()
    assert ledger.balance(org_id).pending == c("2") and result["hold_id"]


def test_a_finished_event_loop_leaves_no_committer_behind(sqlite_ledger: Ledger) -> None:
    import gc

    ledger = sqlite_ledger
    org_id = ledger.create_org("acme").id
    ledger.grant(org_id, c("5"))
    for _ in range(3):  # as a test suite does: a new loop each time
        asyncio.run(ledger.execute_async(ledger.reserve_operation(org_id, c("1")), inline=True))
    gc.collect()
    assert len(ledger._loop_committers) == 0
    assert ledger.balance(org_id).pending == c("3")


def test_an_operation_that_raises_a_bug_fails_alone_not_the_batch_it_shared(database_url: str) -> None:
    """An error that is not the database's (a bug, or a value past every check: an upstream's
    absurd usage once overflowed a record's 64-bit column) must fail only its own caller."""
    from dataclasses import dataclass

    from creditgate.ledger.operations import Debit

    @dataclass(frozen=True)
    class Broken(Debit):
        def apply(self, book: Any, now_us: int, fingerprint: str | None) -> dict[str, Any]:
            raise TypeError("Integer exceeds 64-bit range")

    database = Database(database_url)
    upgrade(database)
    ledger = Ledger(database)
    try:
        first, second = ledger.create_org("first"), ledger.create_org("second")
        for org in (first, second):
            ledger.grant(org.id, c("10"))
        good = ledger.debit_operation(first.id, c("1"))
        broken = Broken(second.id, None, amount=c("1"), scope="inference")
        outcomes = ledger.writer._commit([good, broken, ledger.debit_operation(second.id, c("2"))])
        assert outcomes is not None
        assert isinstance(outcomes[1], TypeError)
        assert not isinstance(outcomes[0], BaseException) and not isinstance(outcomes[2], BaseException)
        assert ledger.balance(first.id).available == c("9")
        assert ledger.balance(second.id).available == c("8")
        assert verify(database).ok
    finally:
        ledger.close()
        database.dispose()
