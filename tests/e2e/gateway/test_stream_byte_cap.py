"""A stream is capped in total bytes (``upstream.STREAM_BYTES_MAX``, counted inflated), not only
line by line and in time: past the cap it ends as an upstream that broke off mid-stream does, with
an OpenAI-shaped error event and no [DONE], charged for the deltas delivered, nothing left held.

The cap is lowered here to a few KiB; ``#lengthy`` makes the test upstream stream far more.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from tests.e2e.gateway.conftest import Stack, cost
from tests.support.openai_upstream import LENGTHY_REPLY_TOKENS

from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

CAP = 16 * 1024
LINE_BYTES_MIN = 100  # every chunk the test upstream sends is longer: at most CAP // 100 fit


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from creditgate.gateway import upstream

    monkeypatch.setattr(upstream, "STREAM_BYTES_MAX", CAP)


def assert_nothing_held(stack: Stack, org_id: str, charged: int) -> None:
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - charged, 0)
    assert stack.services.ledger.list_holds(org_id, status="pending") == []
    assert verify(stack.services.database).ok


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_stream_past_the_byte_cap_breaks_off_and_is_charged_for_the_deltas_delivered(
        stack: Stack, small_cap: None, encoding: str) -> None:
    # Gzip shrinks the repetitive stream far under the cap: it is the inflated bytes that count.
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    messages = [{"role": "user", "content": "hello #lengthy" + (" #gzip" if encoding == "gzip" else "")}]
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}, timeout=30) as client, \
            client.stream("POST", "/v1/chat/completions", json={
                "model": "mock-gpt", "messages": messages, "stream": True,
                "max_tokens": LENGTHY_REPLY_TOKENS}) as answer:
        assert answer.status_code == 200
        events = [line for line in answer.iter_lines() if line]  # raises if the body is cut
    assert all(event.startswith("data: ") for event in events)
    assert "data: [DONE]" not in events
    *chunks, last = [orjson.loads(event[6:]) for event in events]
    error = last["error"]
    assert set(error) == {"type", "message", "param", "code"} and error["code"] == "upstream_stream_broken"
    assert f"larger than {CAP} bytes" in error["message"]
    received = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks)
    delivered = len(chunks)
    assert received == "".join(f"tok{i} " for i in range(delivered))  # in order, none skipped
    assert 0 < delivered < CAP // LINE_BYTES_MIN
    [row] = stack.usage_rows()
    assert (row["tags"]["status"], row["tags"]["error"]) == ("partial", "upstream_stream_broken")
    input_tokens = -(-len(orjson.dumps(messages)) // 4)
    assert row["meters"] == {"input_tokens": input_tokens, "output_tokens": delivered, "requests": 1,
                             "estimated": 1}
    assert row["credits"] == cost(input_tokens, delivered)
    assert_nothing_held(stack, org_id, row["credits"])


def test_a_stream_under_the_byte_cap_is_relayed_whole(stack: Stack, small_cap: None) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    tokens = 40  # about 7 KiB of chunks, under the 16 KiB cap
    chunks = list(stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hello #lengthy"}], max_tokens=tokens,
        stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        f"tok{i} " for i in range(tokens))
    [usage] = [c.usage for c in chunks if c.usage is not None]
    assert usage.completion_tokens == tokens
    [row] = stack.usage_rows()
    assert (row["tags"]["status"], row["tags"].get("error")) == ("ok", None)
    assert row["credits"] == cost(usage.prompt_tokens, usage.completion_tokens)
    assert_nothing_held(stack, org_id, row["credits"])
