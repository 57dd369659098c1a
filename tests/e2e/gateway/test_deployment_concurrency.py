"""A deployment's ``concurrency_max`` and ``timeout_s`` as streams meet them: a stream holds a slot
for as long as it runs, and may run longer than the timeout as long as no line is later than it; a
request that cannot get a slot within the timeout fails with 503 ``deployment_busy`` before
anything is sent upstream, with nothing charged (not even a per-request fee)."""

from __future__ import annotations

import concurrent.futures
import time

import openai
import pytest
from sqlalchemy import select
from tests.e2e.gateway.conftest import FEE, PRICES_WITH_FEE, Stack, cost

from creditgate.gateway.config import STREAM_SECONDS_MAX, hold_ttl_s
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify
from creditgate.storage.schema import holds

HELLO = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("queued_stream", [False, True], ids=["queued-plain", "queued-stream"])
def test_a_stream_holds_the_only_slot_for_its_whole_life_and_outlives_the_timeout(
        stack: Stack, queued_stream: bool) -> None:
    stack.deploy(name="mock-gpt", concurrency_max=1, timeout_s=1.5, prices=PRICES_WITH_FEE)
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "long #linger"}], max_tokens=5, stream=True,
        stream_options={"include_usage": True})
    chunks = [next(stream)]  # five chunks, a second apart: about 4 s in all
    with stack.services.database.read() as connection:
        [(created, expires)] = connection.execute(select(holds.c.created_at_us, holds.c.expires_at_us)).all()
    # The stream's hold outlives the longest stream (its lines are timed one by one, not as a whole).
    assert expires - created == hold_ttl_s(1500, stream=True) * 1_000_000 > STREAM_SECONDS_MAX * 1_000_000
    upstream_calls = len(stack.upstream.state.reported)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        queued = pool.submit(client.chat.completions.create, model="mock-gpt", messages=HELLO, max_tokens=5,
                             stream=queued_stream)
        # While it waits for the slot, the queued request already holds its credits: its key's
        # next hold need not wait for it to reach the upstream.
        deadline = time.monotonic() + 1.4
        while len(stack.services.ledger.list_holds(org_id, status="pending")) < 2 and not queued.done():
            assert time.monotonic() < deadline, "the queued request's hold was not committed"
            time.sleep(0.01)
        assert not queued.done()
        with pytest.raises(openai.APIStatusError) as busy:
            queued.result()
    assert busy.value.status_code == 503 and busy.value.body["code"] == "deployment_busy"  # type: ignore[index]
    assert len(stack.services.ledger.list_holds(org_id, status="pending")) == 1  # its hold is voided

    chunks.extend(stream)  # still running after the 1.5 s timeout: no line came later than that
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 "
    usage = next(c.usage for c in chunks if c.usage is not None)
    assert len(stack.upstream.state.reported) == upstream_calls + 1  # the busy request was never sent

    # The stream's end gave its slot back.
    completion = client.chat.completions.create(model="mock-gpt", messages=HELLO, max_tokens=5)
    rows = stack.usage_rows()
    assert [(row["tags"]["status"], row["tags"].get("error"), row["credits"]) for row in rows] == [
        ("error", "deployment_busy", 0),  # the fee is for requests that reached the upstream
        ("ok", None, cost(usage.prompt_tokens, usage.completion_tokens) + FEE),
        ("ok", None, cost(completion.usage.prompt_tokens, completion.usage.completion_tokens) + FEE)]
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - sum(row["credits"] for row in rows), 0)
    assert verify(stack.services.database).ok
