"""The hot path's positional copies of records must equal the readable _replace they stand for."""

from __future__ import annotations

from creditgate.ledger.records import Grant, Hold, Org


def test_grant_with_amounts_changes_only_remaining_and_held() -> None:
    grant = Grant("grt_1", "org_1", "purchase", "any", 10, 1, 99, 100, 90, 5, 1, 3, "EUR", "active",
                  frozenset({"m"}), "grt_0", '{"x":1}', '{"y":2}')
    assert grant.with_amounts(80, 7) == grant._replace(remaining=80, held=7)


def test_hold_resolved_changes_only_status_posted_and_time() -> None:
    hold = Hold("hld_1", "org_1", 10, "inference", "pending", 1, 2, (("grt_1", 10),), "m", 0, None,
                '{"z":3}', ("bdg_1",))
    assert hold.resolved("posted", 4, 9) == hold._replace(status="posted", posted=4, resolved_at_us=9)


def test_org_with_chain_changes_only_the_chain() -> None:
    org = Org("org_1", "acme", 1, 5, 2, 3, 7, "a" * 64)
    assert org.with_chain(8, "b" * 64) == org._replace(chain_seq=8, chain_head="b" * 64)
