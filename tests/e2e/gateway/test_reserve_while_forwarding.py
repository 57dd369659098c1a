"""A request's hold committed while its upstream works (Pipeline.reserve_while_forwarding).

The gateway forwards first and commits the hold meanwhile only for a key it last saw able to
pay; the answer still waits for the hold. These tests drive the real stack with the
official SDK and check that the overlap keeps reserve -> forward -> settle's guarantees.
"""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from tests.e2e.gateway.conftest import Stack

from creditgate.ledger.credits import format_amount, parse_amount
from creditgate.ledger.verify import verify


def ask(client: openai.OpenAI, content: str = "hello") -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": content}],
                                          max_tokens=50)


def gateway(stack: Stack) -> object:
    return stack.services.extras["gateway"]


def known_payer(stack: Stack, content: str = "hello") -> tuple[str, openai.OpenAI, openai.types.chat.ChatCompletion]:
    """A deployment, an organization holding 10 credits, and the first request of its key (the
    first sight of a key: reserve, then forward), so that the next one may overlap."""
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    return org_id, client, ask(client, content)


def spend_elsewhere(stack: Stack, org_id: str, *, leave: int = 100) -> None:
    """Another process spends all but ``leave`` micro-credits; this gateway still remembers the
    old balance."""
    left = stack.services.ledger.balance(org_id).available
    stack.services.ledger.debit(org_id, left - leave)


def refused_meanwhile(stack: Stack, send: Callable[[openai.OpenAI], object]) -> tuple[
        str, openai.OpenAI, openai.APIStatusError]:
    """A known payer whose credits another process takes: its next request, sent upstream before
    its hold, is refused with a 402 when the hold is, and nothing is charged or left held."""
    org_id, client, _ = known_payer(stack)
    spend_elsewhere(stack, org_id)
    with pytest.raises(openai.APIStatusError) as caught:
        send(client)
    assert caught.value.status_code == 402
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (100, 0)  # nothing charged, no hold left
    return org_id, client, caught.value


def slow_burst(stack: Stack, secret: str, requests: int = 6) -> list[int]:
    """``requests`` slow requests of one key at once; their status codes."""
    import asyncio

    async def burst() -> list[int]:
        async with stack.openai_async(secret) as burst_client:
            async def one() -> int:
                try:
                    await burst_client.chat.completions.create(
                        model="mock-gpt", messages=[{"role": "user", "content": "hello #slow"}], max_tokens=50)
                    return 200
                except openai.APIStatusError as error:
                    return error.status_code
            return await asyncio.gather(*(one() for _ in range(requests)))

    return asyncio.run(burst())


def cost(usages: tuple[object, ...]) -> int:
    return sum(u.prompt_tokens * 150 + u.completion_tokens * 600 for u in usages)  # type: ignore[attr-defined]


def test_known_payer_is_reserved_during_the_forward_and_charged_exactly(stack: Stack) -> None:
    org_id, client, first = known_payer(stack)
    assert gateway(stack).reserved_while_forwarding == 0  # type: ignore[attr-defined]
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hello"}], max_tokens=50)
    second = raw.parse()
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    spent = cost((first.usage, second.usage))
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") - spent and balance.pending == 0
    assert raw.headers["x-creditgate-balance"] == format_amount(balance.available)
    assert [row["credits"] for row in stack.usage_rows()] == [cost((first.usage,)), cost((second.usage,))]
    assert verify(stack.services.database).ok


def test_credits_taken_elsewhere_meanwhile_answer_402_and_charge_nothing(stack: Stack) -> None:
    _, client, refusal = refused_meanwhile(stack, ask)
    assert refusal.body["type"] == "insufficient_credits"
    # The refusal taught the gateway: the next request reserves first and never goes upstream.
    # (Told apart by its prompt, 3 words + 3 = 6 tokens: the refused request, cancelled on the
    # wire, may still reach the upstream's count after this point.)
    with pytest.raises(openai.APIStatusError):
        ask(client, "never sent upstream")
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    assert [usage for usage in stack.upstream.state.reported if usage["prompt_tokens"] == 6] == []
    assert verify(stack.services.database).ok


def test_upstream_failure_during_the_overlap_voids_the_hold(stack: Stack) -> None:
    org_id, client, _ = known_payer(stack)
    after_first = stack.services.ledger.balance(org_id).available
    with pytest.raises(openai.InternalServerError):
        ask(client, "#error500")
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (after_first, 0)
    assert [row["credits"] for row in stack.usage_rows()] == [parse_amount("10") - after_first, 0]
    assert verify(stack.services.database).ok


def test_turned_off_it_always_reserves_first(stack: Stack) -> None:
    from dataclasses import replace

    stack.deploy(name="mock-gpt")
    _, _, secret = stack.org_with_key("acme", "10")
    gw = gateway(stack)
    gw.config = replace(gw.config, reserve_while_forwarding=False)  # type: ignore[attr-defined]
    client = stack.openai(secret)
    ask(client)
    ask(client)
    assert gw.reserved_while_forwarding == 0  # type: ignore[attr-defined]


def stream_text(client: openai.OpenAI) -> tuple[str, object]:
    stream = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=50, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    return text, usage


def test_a_stream_is_reserved_while_the_upstream_opens_it(stack: Stack) -> None:
    org_id, client, first = known_payer(stack)
    text, usage = stream_text(client)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    spent = cost((first.usage, usage))
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") - spent and balance.pending == 0
    assert verify(stack.services.database).ok


def test_a_stream_refused_meanwhile_is_402_before_any_token(stack: Stack) -> None:
    refused_meanwhile(stack, stream_text)
    assert gateway(stack).in_flight == 0  # type: ignore[attr-defined]
    assert verify(stack.services.database).ok


def test_a_key_with_its_budget_spent_never_rides_on_another_keys_success(stack: Stack) -> None:
    from creditgate.api import keystore

    stack.deploy(name="mock-gpt")
    org_id, _, paying = stack.org_with_key("acme", "10")
    capped, capped_secret = keystore.create_key(stack.services, kind="org", name="capped", org_id=org_id,
                                                scopes=["inference"])
    stack.services.ledger.set_budget(org_id, f"key:{capped.id}", parse_amount("0.001"), mode="hard")
    ask(stack.openai(paying))
    ask(stack.openai(paying))  # the paying key's second request overlaps
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    upstream_calls = len(stack.upstream.state.reported)
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as caught:
            ask(stack.openai(capped_secret))
        assert caught.value.status_code == 402
    assert gateway(stack).reserved_while_forwarding == 1  # type: ignore[attr-defined]
    assert len(stack.upstream.state.reported) == upstream_calls  # refused before going upstream
    assert stack.services.ledger.balance(org_id).pending == 0


def test_a_burst_sends_upstream_only_what_the_balance_covers(stack: Stack) -> None:
    """Six slow requests at once against credits for two: the four refused never reach the
    upstream, whether they arrive in one turn of the gateway's loop or apart, before or after the
    first holds are committed (see Pipeline._may_overlap and Pipeline.reserve)."""

    from sqlalchemy import select

    from creditgate.storage.schema import holds

    org_id, client, first = known_payer(stack, "hello #slow")
    with stack.services.database.read() as connection:
        max_cost = connection.execute(select(holds.c.amount)).scalar_one()  # the first request's hold
    # Leave the organization enough for two more holds; this gateway learns it from its next write.
    spend_elsewhere(stack, org_id, leave=2 * max_cost + max_cost // 2 + cost((first.usage,)))
    ask(client, "hello #slow")
    upstream_before = len(stack.upstream.state.reported)
    secret = client.api_key

    statuses = slow_burst(stack, secret)
    assert sorted(statuses) == [200, 200, 402, 402, 402, 402]
    assert len(stack.upstream.state.reported) - upstream_before == 2  # no upstream work wasted
    balance = stack.services.ledger.balance(org_id)
    assert balance.pending == 0
    assert verify(stack.services.database).ok


def test_a_burst_sends_upstream_only_what_the_keys_hard_budget_covers(stack: Stack) -> None:
    """The organization has credits to spare, but the key's hard budget covers two more holds:
    of six requests at once, the four its budget refuses never reach the upstream."""

    from sqlalchemy import select

    from creditgate.storage.schema import holds

    stack.deploy(name="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    ask(client, "hello #slow")
    with stack.services.database.read() as connection:
        max_cost = connection.execute(select(holds.c.amount)).scalar_one()
    stack.services.ledger.set_budget(org_id, f"key:{key_id}", 2 * max_cost + max_cost // 2, mode="hard")
    ask(client, "hello #slow")  # overlaps; its settlement tells this process what the key may spend
    upstream_before = len(stack.upstream.state.reported)

    statuses = slow_burst(stack, secret)
    assert sorted(statuses) == [200, 200, 402, 402, 402, 402]
    assert len(stack.upstream.state.reported) - upstream_before == 2  # no upstream work wasted
    assert stack.services.ledger.balance(org_id).pending == 0
    assert verify(stack.services.database).ok
