"""The documented burn-down order: priority, expiry (never-expiring last), created_at, id.

Only live grants (effective, unexpired, active) whose scope and allow-list cover the usage are
eligible. Each test reserves or debits and reads which grants paid, in which order.
"""

from __future__ import annotations

import pytest

from creditgate.errors import InsufficientCredits

from .books import DAY, SECOND, T0, add_grant, c, new_book


def legs(result: dict[str, object]) -> list[tuple[str, int]]:
    return [(grant_id, amount) for grant_id, amount in result["legs"]]  # type: ignore[union-attr]


def paid(result: dict[str, object]) -> list[tuple[str, int]]:
    return [(grant_id, amount) for grant_id, amount in result["paid"]]  # type: ignore[union-attr]


def test_lower_priority_number_burns_first() -> None:
    book = new_book()
    late = add_grant(book, "10", priority=200)
    early = add_grant(book, "10", priority=10)
    middle = add_grant(book, "10", priority=100)
    result = book.reserve(c("25"), "inference", 60 * SECOND, T0)
    assert legs(result) == [(early, c("10")), (middle, c("10")), (late, c("5"))]


def test_sooner_expiry_burns_first_and_never_expiring_grants_last() -> None:
    book = new_book()
    never = add_grant(book, "10")
    in_ten_days = add_grant(book, "10", expires_at=T0 + 10 * DAY)
    in_five_days = add_grant(book, "10", expires_at=T0 + 5 * DAY)
    result = book.debit(c("25"), "inference", T0)
    assert paid(result) == [(in_five_days, c("10")), (in_ten_days, c("10")), (never, c("5"))]


def test_priority_wins_over_expiry() -> None:
    book = new_book()
    expiring_soon = add_grant(book, "10", priority=50, expires_at=T0 + DAY)
    never_but_first = add_grant(book, "10", priority=1)
    result = book.debit(c("12"), "inference", T0)
    assert paid(result) == [(never_but_first, c("10")), (expiring_soon, c("2"))]


def test_older_grant_burns_first_when_priority_and_expiry_tie() -> None:
    book = new_book()
    newer = add_grant(book, "10", now=T0 + 5 * SECOND, grant_id="grt_a")
    older = add_grant(book, "10", now=T0, grant_id="grt_z")
    result = book.debit(c("15"), "inference", T0 + 10 * SECOND)
    assert paid(result) == [(older, c("10")), (newer, c("5"))]


def test_id_breaks_the_last_tie() -> None:
    book = new_book()
    add_grant(book, "10", grant_id="grt_b")
    add_grant(book, "10", grant_id="grt_c")
    add_grant(book, "10", grant_id="grt_a")
    result = book.debit(c("25"), "inference", T0)
    assert paid(result) == [("grt_a", c("10")), ("grt_b", c("10")), ("grt_c", c("5"))]


@pytest.mark.parametrize(("usage", "expected_grants"), [
    ("inference", ["grt_any", "grt_inference"]),
    ("training", ["grt_any", "grt_training"]),
])
def test_scope_any_covers_both_and_scoped_grants_only_their_own(usage: str, expected_grants: list[str]) -> None:
    book = new_book()
    add_grant(book, "10", scope="inference", grant_id="grt_inference")
    add_grant(book, "10", scope="training", grant_id="grt_training")
    add_grant(book, "10", scope="any", grant_id="grt_any", priority=1)
    assert book.available(usage, (), T0) == c("20")
    result = book.reserve(c("20"), usage, 60 * SECOND, T0)
    assert [grant_id for grant_id, _ in legs(result)] == expected_grants
    with pytest.raises(InsufficientCredits):
        book.reserve(c("0.000001"), usage, 60 * SECOND, T0)


def test_allow_list_restricts_a_grant_to_named_models() -> None:
    book = new_book()
    promo = add_grant(book, "10", priority=1, allow=["llama-3-8b", "tokens.input"], grant_id="grt_promo")
    plain = add_grant(book, "10", grant_id="grt_plain")
    # Usage that names only allowed subjects may use the promotion (first, by priority).
    result = book.debit(c("3"), "inference", T0, subjects=("llama-3-8b", "tokens.input"))
    assert paid(result) == [(promo, c("3"))]
    # Another model, or one allowed and one not, may not.
    result = book.debit(c("3"), "inference", T0, subjects=("llama-3-8b", "gpt-4o"))
    assert paid(result) == [(plain, c("3"))]
    # Usage that names nothing cannot prove it is allowed.
    result = book.debit(c("1"), "inference", T0)
    assert paid(result) == [(plain, c("1"))]
    assert book.available("inference", ("gpt-4o",), T0) == c("6")
    assert book.available("inference", ("llama-3-8b",), T0) == c("13")


def test_grants_not_yet_effective_expired_or_voided_are_not_eligible() -> None:
    book = new_book()
    add_grant(book, "10", effective_at=T0 + DAY, grant_id="grt_future")
    add_grant(book, "10", expires_at=T0 + SECOND, grant_id="grt_expired")
    voided = add_grant(book, "10", grant_id="grt_voided")
    live = add_grant(book, "1", grant_id="grt_live")
    book.void_grant(voided, T0)
    now = T0 + SECOND  # grt_expired ends exactly now: expiry is exclusive
    assert book.available("inference", (), now) == c("1")
    with pytest.raises(InsufficientCredits, match="1 available, 2 required"):
        book.reserve(c("2"), "inference", 60 * SECOND, now)
    assert paid(book.debit(c("1"), "inference", now)) == [(live, c("1"))]
    # A day later the future grant is live.
    assert book.available("inference", (), T0 + DAY) == c("10")


def test_exhausted_grants_are_skipped() -> None:
    book = new_book()
    first = add_grant(book, "5", priority=1)
    second = add_grant(book, "5", priority=2)
    book.debit(c("5"), "inference", T0)
    assert paid(book.debit(c("1"), "inference", T0)) == [(second, c("1"))]
    assert book.grants[first].remaining == 0
