"""A stream that ends early, because the upstream failed or the client left: the client is charged
for what it was delivered, never zero, the rest of the hold is released, and the usage record says
what ended it.

None of these streams carries usage, so the gateway counts: the output deltas that reached the
client, and the prompt estimated at one token per four bytes of its JSON.
"""

from __future__ import annotations

import time

import openai
import orjson
import pytest
from tests.e2e.gateway.conftest import Stack, cost

from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

MESSAGES_CUT = [{"role": "user", "content": "hello #cut"}]
MESSAGES_CRASH = [{"role": "user", "content": "hello #crash"}]
DELIVERED = 2  # the test upstream sends two chunks before it stops


def estimated_input_tokens(messages: list[dict[str, str]]) -> int:
    return -(-len(orjson.dumps(messages)) // 4)


def assert_charged_for_what_was_delivered(stack: Stack, org_id: str, messages: list[dict[str, str]],
                                          error: str) -> None:
    expected = cost(estimated_input_tokens(messages), DELIVERED)
    [row] = stack.usage_rows()
    assert (row["tags"]["status"], row["tags"]["error"]) == ("partial", error)
    assert row["meters"] == {"input_tokens": estimated_input_tokens(messages), "output_tokens": DELIVERED,
                             "requests": 1, "estimated": 1}
    assert row["credits"] == expected > 0
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - expected, 0)  # the rest released
    assert stack.services.ledger.list_holds(org_id, status="pending") == []
    assert verify(stack.services.database).ok


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_stream_that_ends_early_without_usage_is_charged_for_the_deltas_delivered(
        stack: Stack, include_usage: bool) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=MESSAGES_CUT, max_tokens=5, stream=True, **options))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 "
    assert [c for c in chunks if c.usage is not None] == []  # the upstream reported none
    assert_charged_for_what_was_delivered(stack, org_id, MESSAGES_CUT, "upstream_stream_ended")


def test_an_upstream_that_drops_the_connection_mid_stream_is_charged_for_the_deltas_delivered(
        stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    stream = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=MESSAGES_CRASH, max_tokens=5, stream=True)
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "tok0 tok1 "
    assert failure.value.body["code"] == "upstream_stream_broken"  # type: ignore[index]
    assert "broke off mid-stream" in failure.value.message
    assert_charged_for_what_was_delivered(stack, org_id, MESSAGES_CRASH, "upstream_stream_broken")


def test_a_client_that_leaves_mid_stream_is_charged_for_what_it_was_sent_and_recorded_as_gone(
        stack: Stack) -> None:
    stack.deploy(name="mock-gpt", concurrency_max=1)
    org_id, _, secret = stack.org_with_key("acme", "10")
    stream = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hello #drip"}], max_tokens=400, stream=True)
    received = [next(stream), next(stream)]  # 5 ms a chunk: the upstream is far from done
    stream.close()
    assert len(received) == 2
    deadline = time.monotonic() + 20
    while stack.services.ledger.list_holds(org_id, status="pending") and time.monotonic() < deadline:
        time.sleep(0.02)  # the gateway settles once it notices the client is gone
    [row] = stack.usage_rows()
    assert (row["tags"]["status"], row["tags"]["error"]) == ("partial", "client_disconnected")
    assert 2 <= row["meters"]["output_tokens"] < 400 and row["meters"]["estimated"] == 1
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - row["credits"], 0)
    # The deployment's only slot came back with the stream's end.
    assert stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=5).choices
    assert verify(stack.services.database).ok
