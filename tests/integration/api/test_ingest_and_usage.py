"""Usage ingestion (dedup, partial acceptance, late events) and usage queries on real storage."""

from __future__ import annotations

from typing import Any

from creditgate.clock import ManualClock, iso
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database
from creditgate.usage import ingest
from creditgate.usage.queries import HOUR_US, UsageQuery, run_query, to_csv
from creditgate.usage.records import UsageRow, record_usage
from tests.e2e.api.conftest import sample_engine

MICROS = 1_000_000


def _event(org_id: str, event_id: str, at: str, tokens: int = 1_000_000, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "type": "creditgate.usage", "id": event_id, "source": "src",
            "subject": org_id, "time": at,
            "data": {"model": "gpt-test", "meters": {"input_tokens": tokens}, **data}}


def _ingest(database: Database, clock: ManualClock, events: list[Any]) -> list[dict[str, Any]]:
    return ingest.ingest_batch(database, sample_engine(clock), events, caller=ingest.Caller(None),
                               now_us=clock.now_us())


def test_dedup_partial_acceptance_and_late_events(database: Database, ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("acme")
    ledger.grant(org.id, 5 * MICROS)
    now = iso(clock.now_us())
    old = iso(clock.now_us() - 31 * 86_400 * MICROS)
    ahead = iso(clock.now_us() + 3_600 * MICROS)
    results = _ingest(database, clock, [_event(org.id, str(n), now) for n in range(4)]
                      + [_event(org.id, "old", old), _event(org.id, "ahead", ahead),
                         _event("org_missing", "m", now)])
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected", "rejected",
                                              "rejected", "rejected", "rejected"]
    assert [r.get("reason") for r in results[2:]] == ["insufficient_credits", "insufficient_credits",
                                                      "too_old", "in_future", "unknown_org"]
    assert ledger.balance(org.id).available == MICROS
    # Refused events were not claimed: once credits arrive they are accepted; accepted ones stay duplicates.
    ledger.grant(org.id, 10 * MICROS)
    again = _ingest(database, clock, [_event(org.id, str(n), now) for n in range(4)])
    assert [r["status"] for r in again] == ["duplicate", "duplicate", "accepted", "accepted"]
    assert ledger.balance(org.id).available == 7 * MICROS
    clock.advance(days=20)
    assert _ingest(database, clock, [_event(org.id, "0", now)])[0]["status"] == "duplicate"


def test_usage_query_rollups_match_raw_records(database: Database, ledger: Ledger, clock: ManualClock) -> None:
    org = ledger.create_org("usage")
    base = clock.now_us()
    rows = [UsageRow(org_id=org.id, model=("a", "b")[n % 2], meters={"input_tokens": n, "output_tokens": 1},
                     credits=10 + n, at_us=base + n * 7 * 60 * MICROS + 17 * MICROS,
                     project_id=("p1", None)[n % 2], key_id="k1",
                     tags={"purpose": "bot"} if n % 3 else {}) for n in range(60)]
    record_usage(database, rows)
    start, end = base + 5 * MICROS, base + 6 * HOUR_US + 11 * MICROS
    for group_by in ((), ("model",), ("tag:purpose",), ("project", "meter"), ("model", "tag:purpose")):
        for bucket in ("hour", "day", "month"):
            fast = run_query(database, UsageQuery(org.id, start, end, bucket=bucket, group_by=group_by))
            expected = _by_hand(rows, start, end, group_by)
            assert _total(fast, "events") == expected, (group_by, bucket)
    by_model = run_query(database, UsageQuery(org.id, start, end, bucket="day", group_by=("model",)))
    assert {row["model"] for row in by_model} == {"a", "b"}
    by_tag = run_query(database, UsageQuery(org.id, start, end, bucket="day", group_by=("tag:purpose",)))
    assert {row["tag:purpose"] for row in by_tag} == {"bot", None}
    text = to_csv(UsageQuery(org.id, start, end, group_by=("model",)), by_model)
    assert text.splitlines()[0] == "bucket_start,model,credits,events,input_tokens,output_tokens"


def _by_hand(rows: list[UsageRow], start: int, end: int, group_by: tuple[str, ...]) -> int:
    return sum(1 for row in rows if start <= row.at_us < end)


def _total(result: list[dict[str, Any]], field: str) -> int:
    if result and "meter" in result[0]:
        return sum(row["quantity"] for row in result if row["meter"] == "output_tokens")
    return sum(row[field] for row in result)


def test_scheduler_forgets_dedup_claims_past_their_retention(database: Database, clock: ManualClock) -> None:
    from creditgate.api.server import housekeeping
    from creditgate.billing.scheduler import BillingScheduler
    from creditgate.bootstrap import bootstrap

    services = bootstrap(database.url, clock=clock)
    try:
        org = services.ledger.create_org("dedup")
        services.ledger.grant(org.id, 10 * MICROS)
        assert _ingest(database, clock, [_event(org.id, "e1", iso(clock.now_us()))])[0]["status"] == "accepted"
        scheduler = BillingScheduler(services.extras["billing"], chores=housekeeping(services))

        def claims() -> int:
            with database.read() as connection:
                return int(connection.exec_driver_sql("SELECT COUNT(*) FROM usage_event_keys").scalar_one())

        clock.advance(days=ingest.DEDUP_RETENTION_S // 86_400 - 1)
        scheduler.run_once()
        assert claims() == 1  # still within the retention: a replay is still a duplicate
        clock.advance(days=2)
        scheduler.run_once()
        assert claims() == 0
    finally:
        services.close()


def test_pending_rollups_are_exact_before_and_after_they_are_folded_in(database: Database, ledger: Ledger,
                                                                        clock: ManualClock) -> None:
    import threading

    from creditgate.ledger.credits import parse_amount
    from creditgate.storage.driver import Driver
    from creditgate.usage.records import insert_usage, roll_up_pending

    org = ledger.create_org("pending")
    base = clock.now_us()
    rows = [UsageRow(org_id=org.id, model=("a", "b")[n % 2], meters={"input_tokens": n, "output_tokens": 1},
                     credits=10 + n, at_us=base + n * 7 * 60 * MICROS + 17 * MICROS, key_id="k1",
                     tags={"purpose": "bot"} if n % 3 else {}) for n in range(60)]
    with database.write() as connection:
        insert_usage(connection, rows[::2])  # as ingestion stores them: rollups at once
    with database.write() as connection:
        insert_usage(connection, rows[1::2], roll_up=False)  # as the gateway does
    start, end = base, base + 8 * HOUR_US
    shapes = [((), "hour"), (("model",), "day"), (("tag:purpose",), "hour"), (("key", "meter"), "day")]

    def answers() -> list[list[dict[str, Any]]]:
        return [run_query(database, UsageQuery(org.id, start, end, bucket=bucket, group_by=group_by))
                for group_by, bucket in shapes]

    before = answers()
    for (group_by, _), answer in zip(shapes, before, strict=True):
        assert _total(answer, "events") == 60, group_by
    assert sum(parse_amount(row["credits"]) for row in before[0]) == sum(row.credits for row in rows)
    # Two passes at once, a few records each: every pending record is folded in exactly once.
    folded: list[int] = []

    def roll() -> None:
        while True:
            with database.write() as connection:
                count = roll_up_pending(connection, records_max=7)
            if not count:
                return
            folded.append(count)

    threads = [threading.Thread(target=roll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(folded) == 30
    assert answers() == before
    with database.read() as connection:
        [(pending,)] = Driver(connection).all("SELECT count(*) FROM usage_records WHERE rollup_pending = 1")
    assert pending == 0


def test_two_organizations_may_use_the_same_source_and_ids(database: Database, ledger: Ledger,
                                                           clock: ManualClock) -> None:
    """(source, id) is unique per producer, and each tenant names its own sources: one tenant's
    events must not make another's count as duplicates (and go unmetered)."""
    first, second = ledger.create_org("first"), ledger.create_org("second")
    for org in (first, second):
        ledger.grant(org.id, 5 * MICROS)
    now = iso(clock.now_us())
    assert [r["status"] for r in _ingest(database, clock, [_event(first.id, str(n), now) for n in range(2)])] \
        == ["accepted", "accepted"]
    results = _ingest(database, clock, [_event(second.id, str(n), now) for n in range(2)]
                      + [_event(second.id, "0", now)])
    assert [r["status"] for r in results] == ["accepted", "accepted", "duplicate"]
    assert ledger.balance(first.id).available == ledger.balance(second.id).available == MICROS  # 2 each
    assert _ingest(database, clock, [_event(first.id, "1", now)])[0]["status"] == "duplicate"


def test_an_event_naming_a_project_or_key_is_checked_against_them(database: Database, ledger: Ledger,
                                                                  clock: ManualClock) -> None:
    from sqlalchemy import insert

    from creditgate.storage.schema import projects

    org, other = ledger.create_org("acme"), ledger.create_org("other")
    ledger.grant(org.id, 5 * MICROS)
    with database.write() as connection:
        connection.execute(insert(projects), [
            {"id": "prj_a", "org_id": org.id, "name": "a", "created_at_us": 1},
            {"id": "prj_o", "org_id": other.id, "name": "o", "created_at_us": 1}])
    now = iso(clock.now_us())
    results = _ingest(database, clock, [
        {**_event(org.id, "1", now), "subject": f"{org.id}/project/prj_a"},
        {**_event(org.id, "2", now), "subject": f"{org.id}/project/prj_o"},  # another org's project
        {**_event(org.id, "3", now), "subject": f"{org.id}/project/prj_nope"},
        {**_event(org.id, "4", now), "subject": f"{org.id}/key/key_nope"}])
    assert [(r["status"], r.get("reason")) for r in results] == [
        ("accepted", None), ("rejected", "unknown_project"), ("rejected", "unknown_project"),
        ("rejected", "unknown_key")]
    assert ledger.balance(org.id).available == 3 * MICROS  # one event, 2 credits
