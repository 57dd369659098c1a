"""The gateway's in-memory snapshots: never older than their ttl, renewed without making a
request wait while traffic flows, re-read at once after a local change."""

from __future__ import annotations

import asyncio

from creditgate.gateway.snapshot import Snapshot


class Table:
    def __init__(self) -> None:
        self.version = 0
        self.loads = 0
        self.now = 100.0

    def load(self) -> int:
        self.loads += 1
        return self.version


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def loaded(table: Table) -> Snapshot[int]:
    """A snapshot of ``table`` after its first read; the table then moves on to version 1."""
    snapshot = Snapshot(table.load, -1, 2.0, monotonic=lambda: table.now)
    run(snapshot.get())
    table.version = 1
    return snapshot


def test_first_read_waits_for_the_rows() -> None:
    table = Table()
    table.version = 7
    snapshot = Snapshot(table.load, -1, 2.0, monotonic=lambda: table.now)
    assert run(snapshot.get()) == 7
    assert table.loads == 1


def test_young_value_is_served_without_reloading() -> None:
    table = Table()
    snapshot = loaded(table)
    table.now += 0.9
    assert run(snapshot.get()) == 0
    assert table.loads == 1


def test_ageing_value_is_served_while_a_background_reload_renews_it() -> None:
    table = Table()
    snapshot = loaded(table)
    table.now += 1.5  # past half its life, not yet expired

    async def read_then_settle() -> tuple[int, int]:
        first = await snapshot.get()  # does not wait for the reload
        while snapshot._refreshing is not None:
            await asyncio.sleep(0)
        return first, await snapshot.get()

    assert run(read_then_settle()) == (0, 1)
    assert table.loads == 2


def test_expired_value_is_never_served() -> None:
    table = Table()
    snapshot = loaded(table)
    table.now += 2.5
    assert run(snapshot.get()) == 1


def test_local_change_is_seen_by_the_next_read() -> None:
    table = Table()
    snapshot = loaded(table)
    snapshot.invalidate()
    assert run(snapshot.get()) == 1


def test_failed_background_reload_makes_the_next_reader_wait() -> None:
    table = Table()
    fail = {"now": False}

    def load() -> int:
        if fail["now"]:
            raise RuntimeError("database down")
        return table.load()

    snapshot = Snapshot(load, -1, 2.0, monotonic=lambda: table.now)
    run(snapshot.get())
    table.now += 1.5
    fail["now"] = True

    async def read_then_settle() -> int:
        value = await snapshot.get()
        while snapshot._refreshing is not None:
            await asyncio.sleep(0)
        return value

    assert run(read_then_settle()) == 0
    fail["now"] = False
    table.version = 3
    assert run(snapshot.get()) == 3  # waited for a reload rather than serve a value it could not renew
