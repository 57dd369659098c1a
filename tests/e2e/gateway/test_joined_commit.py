"""A hold committed together with its settlement, when the upstream answered first.

At a low rate a fast upstream runs while the gateway writes to it, and its answer is in before
the hold's commit starts. The hold then goes with the settlement as one ledger operation
(ReserveAndSettle), one transaction instead of two, with the same hold, the same journal and the
same refusal. These tests drive the real gateway's steps on a real ledger and upstream; the
upstream call is made "already answered" by handing reserve() a finished future, the one thing
that decides the join.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select
from tests.e2e.gateway.conftest import FEE, PRICES_WITH_FEE, Stack

from creditgate.errors import InsufficientCredits, RateLimited
from creditgate.gateway.limits import RateLimits
from creditgate.gateway.pipeline import Call
from creditgate.gateway.upstream import UpstreamFailure
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify
from creditgate.storage.schema import holds, journal_transactions

MAX_COST = 16_500  # what the hold is for
METERS = {"input_tokens": 10, "output_tokens": 3, "requests": 1}
COST = 10 * 150 + 3 * 600


def answered() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result({"usage": {"prompt_tokens": 10, "completion_tokens": 3}})
    return future


async def a_call(stack: Stack, secret: str) -> Call:
    gateway: Any = stack.services.extras["gateway"]
    principal = gateway.authenticate(f"Bearer {secret}")
    deployment = await gateway.deployments.find("mock-gpt")
    call = Call(principal, deployment, "chat", {"model": "mock-gpt"}, 20, 0, MAX_COST, {}, time.perf_counter_ns())
    assert gateway._may_overlap(call)  # a known payer's request, forwarded ahead of its hold
    return call


def known_payer(stack: Stack) -> tuple[str, str, str, Any]:
    """An organization holding 10 credits whose key this gateway last saw able to pay."""
    stack.deploy(name="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("acme", "10")
    gateway: Any = stack.services.extras["gateway"]
    gateway._remember_available(key_id, parse_amount("10"))
    return org_id, key_id, secret, gateway


def journal_kinds(stack: Stack) -> list[str]:
    with stack.services.database.read() as connection:
        return [row.kind for row in connection.execute(
            select(journal_transactions.c.kind).order_by(journal_transactions.c.at_us, journal_transactions.c.seq))]


def test_an_answer_in_before_the_hold_commits_is_held_and_settled_in_one_transaction(stack: Stack) -> None:
    org_id, _, secret, gateway = known_payer(stack)
    writer = stack.services.ledger.writer
    before = journal_kinds(stack)

    async def run() -> Any:
        call = await a_call(stack, secret)
        await gateway.reserve(call, unless_answered=answered())
        assert call.joined and call.hold_id is None  # nothing committed yet
        assert gateway._unheld == {call.principal.key_id: MAX_COST}  # still counted as unheld
        batches = writer.batches
        charge = await gateway.settle(call, METERS)
        assert writer.batches == batches + 1  # hold and settlement: one transaction
        assert gateway._unheld == {}  # the joined commit itself ended its wait for a hold
        return call, charge

    call, charge = asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - COST, 0)
    assert (charge.cost, charge.available) == (COST, balance.available)
    assert gateway.joined_commits == 1 and gateway._unheld == {}
    assert journal_kinds(stack)[len(before):] == ["hold_reserve", "hold_post"]  # the same two entries
    with stack.services.database.read() as connection:
        hold = connection.execute(select(holds).where(holds.c.id == call.hold_id)).one()
    assert (hold.status, hold.amount, hold.posted) == ("posted", MAX_COST, COST)
    assert [(row["credits"], row["meters"]) for row in stack.usage_rows()] == [(COST, METERS)]
    assert verify(stack.services.database).ok


def test_a_joined_commit_that_the_credits_no_longer_cover_writes_nothing(stack: Stack) -> None:
    org_id, key_id, secret, gateway = known_payer(stack)
    left = stack.services.ledger.balance(org_id).available
    stack.services.ledger.debit(org_id, left - 100)  # another process spends nearly everything
    before = journal_kinds(stack)

    async def run() -> None:
        call = await a_call(stack, secret)
        limiter = await gateway.limiter()
        limits = RateLimits(concurrent_max=1, tokens_per_min=113)
        call.ticket = await limiter.admit(key_id, limits, 100)  # admitted with its estimate
        await gateway.reserve(call, unless_answered=answered())
        assert call.joined
        with pytest.raises(InsufficientCredits):
            await gateway.settle(call, METERS)
        assert gateway._unheld == {}  # the refusal itself ended its wait for a hold
        # Its slot is back, and the 13 tokens the upstream produced still count this minute.
        with pytest.raises(RateLimited, match="tokens"):
            await limiter.admit(key_id, limits, 101)
        await limiter.admit(key_id, limits, 100)

    asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (100, 0)  # nothing charged, nothing held
    assert journal_kinds(stack) == before
    assert stack.usage_rows() == []
    assert gateway.joined_commits == 0 and gateway._unheld == {}
    assert key_id not in gateway._last_available  # forgotten: the next request reserves first
    assert verify(stack.services.database).ok


def test_an_upstream_still_working_when_the_hold_commits_gets_its_own_hold(stack: Stack) -> None:
    org_id, _, secret, gateway = known_payer(stack)

    async def run() -> None:
        call = await a_call(stack, secret)
        working: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await gateway.reserve(call, unless_answered=working)
        assert not call.joined and call.hold_id is not None
        assert stack.services.ledger.balance(org_id).pending == MAX_COST
        await gateway.settle(call, METERS)
        working.cancel()

    asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - COST, 0)
    assert gateway.joined_commits == 0


def test_a_failed_upstream_call_whose_hold_was_left_to_the_settlement_pays_only_the_fee(stack: Stack) -> None:
    fee = FEE
    stack.deploy(name="mock-gpt", prices=PRICES_WITH_FEE)
    org_id, key_id, secret = stack.org_with_key("acme", "10")
    gateway: Any = stack.services.extras["gateway"]
    gateway._remember_available(key_id, parse_amount("10"))

    async def run() -> None:
        call = await a_call(stack, secret)
        failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failed.set_exception(UpstreamFailure(500, "the upstream broke"))
        await gateway.reserve(call, unless_answered=failed)
        assert call.joined and call.hold_id is None
        await gateway.abandon(call, failed.exception())
        assert call.hold_id is not None and gateway._unheld == {}

    asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - fee, 0)
    assert gateway.joined_commits == 1
    assert [(row["credits"], row["meters"]) for row in stack.usage_rows()] == [(fee, {"requests": 1})]
    assert verify(stack.services.database).ok


# ---------------------------------------------------------------------------- the writer thread
# Where the ledger commits on the writer thread (PostgreSQL, or SQLite told so), a queued hold is
# taken at once, before any answer could be in; there the hold waits up to join_wait_s for it.

def test_on_the_writer_thread_an_answer_within_the_wait_is_held_and_settled_in_one_transaction(
        writer_thread_stack: Stack) -> None:
    stack = writer_thread_stack
    org_id, _, secret, gateway = known_payer(stack)
    gateway.config = replace(gateway.config, join_wait_s=60.0)  # the answer below comes first, always
    before = journal_kinds(stack)

    async def run() -> Any:
        call = await a_call(stack, secret)
        upstream: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(upstream.set_result, {})  # answers during the wait
        await gateway.reserve(call, unless_answered=upstream)
        assert call.joined and call.hold_id is None  # nothing committed yet
        assert stack.services.ledger.balance(org_id).pending == 0
        return await gateway.settle(call, METERS)

    charge = asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - COST, 0)
    assert (charge.cost, charge.available) == (COST, balance.available)
    assert gateway.joined_commits == 1 and gateway._unheld == {}
    assert journal_kinds(stack)[len(before):] == ["hold_reserve", "hold_post"]  # the same two entries
    assert [(row["credits"], row["meters"]) for row in stack.usage_rows()] == [(COST, METERS)]
    assert verify(stack.services.database).ok


@pytest.mark.parametrize("join_wait_s", [0.001, 0.0], ids=["still-working-after-the-wait", "no-wait"])
def test_on_the_writer_thread_an_upstream_not_done_in_time_gets_its_own_hold(
        writer_thread_stack: Stack, join_wait_s: float) -> None:
    stack = writer_thread_stack
    org_id, _, secret, gateway = known_payer(stack)
    gateway.config = replace(gateway.config, join_wait_s=join_wait_s)

    async def run() -> None:
        call = await a_call(stack, secret)
        upstream: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not join_wait_s:
            upstream.set_result({})  # answered, but with no wait the hold is committed at once
        await gateway.reserve(call, unless_answered=upstream)
        assert not call.joined and call.hold_id is not None
        assert stack.services.ledger.balance(org_id).pending == MAX_COST
        await gateway.settle(call, METERS)

    asyncio.run(run())
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - COST, 0)
    assert gateway.joined_commits == 0 and gateway._unheld == {}
    assert verify(stack.services.database).ok
