"""Upstreams that misbehave in ways a well-behaved test upstream does not: an answer that inflates
past the size cap, a connection that is never accepted, stream lines too long to read, and stream
chunks that are JSON but cannot be relayed. Each is the upstream's failure: an OpenAI-shaped error
(an error event mid-stream), the hold voided or settled for what was delivered, and a per-request
fee only when the request reached the upstream.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
from tests.e2e.gateway.conftest import FEE, PRICES, PRICES_WITH_FEE, Stack, cost
from tests.support.openai_upstream import PAD_BYTES

from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

HELLO = [{"role": "user", "content": "hello"}]


def assert_nothing_held(stack: Stack, org_id: str, charged: int) -> None:
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - charged, 0)
    assert stack.services.ledger.list_holds(org_id, status="pending") == []
    assert verify(stack.services.database).ok


# ====================================================================== compressed answers
@pytest.mark.parametrize("fee", [False, True], ids=["no-fee", "per-request-fee"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_gzip_answer_that_inflates_past_the_cap_is_refused(
        stack: Stack, monkeypatch: pytest.MonkeyPatch, declared: bool, fee: bool) -> None:
    from creditgate.gateway import upstream

    # The compressed answer is well under the cap, the answer it inflates to well over it.
    monkeypatch.setattr(upstream, "ANSWER_BYTES_MAX", PAD_BYTES // 4)
    stack.deploy(name="mock-gpt", prices=PRICES_WITH_FEE if fee else PRICES)
    org_id, _, secret = stack.org_with_key("acme", "10")
    content = "hello #gzip #pad" + ("" if declared else " #chunked")
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}) as client:
        for _ in range(2):  # the key's first request holds first, its second overlaps its hold
            answer = client.post("/v1/chat/completions", json={
                "model": "mock-gpt", "messages": [{"role": "user", "content": content}], "max_tokens": 5})
            assert answer.status_code == 502, answer.text[:300]
            assert answer.json()["error"]["code"] == "upstream_answer_too_large"
            assert set(answer.json()["error"]) == {"type", "message", "param", "code"}
    # An upstream failure: the hold voided, nothing charged but the fee of a request that reached it.
    assert_nothing_held(stack, org_id, 2 * FEE if fee else 0)
    rows = stack.usage_rows()
    assert [(row["tags"]["status"], row["tags"]["error"]) for row in rows] == [
        ("error", "upstream_answer_too_large")] * 2
    assert [row["credits"] for row in rows] == [FEE if fee else 0] * 2


def test_a_gzip_answer_within_the_cap_is_read_inflated(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    for content in ("hello #gzip", "hello #gzip #chunked", "hello #gzip #pad"):
        completion = stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": content}], max_tokens=5)
        assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    rows = stack.usage_rows()
    assert [row["tags"]["status"] for row in rows] == ["ok"] * 3
    assert_nothing_held(stack, org_id, sum(row["credits"] for row in rows))


def assert_streamed_whole(stack: Stack, content: str) -> None:
    """The whole reply arrives, charged at the upstream's usage, nothing held."""
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    chunks = list(stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": content}], max_tokens=5, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 tok4 "
    [usage] = [c.usage for c in chunks if c.usage is not None]
    assert_nothing_held(stack, org_id, cost(usage.prompt_tokens, usage.completion_tokens))


def test_a_gzip_stream_is_relayed_inflated(stack: Stack) -> None:
    assert_streamed_whole(stack, "hello #gzip")


# ====================================================================== streams the gateway cannot relay
def assert_broken_after_two_deltas(stack: Stack, org_id: str, secret: str, content: str, *,
                                   include_usage: bool = False) -> None:
    """The client gets the two chunks before the bad one, then the error event; it is charged
    for those two deltas (the upstream's usage never came) and the prompt's estimate."""
    messages = [{"role": "user", "content": content}]
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=messages, max_tokens=5, stream=True, **options)
    received = []
    with pytest.raises(openai.APIError) as failure:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "tok0 tok1 "
    assert failure.value.body["code"] == "upstream_stream_broken"  # type: ignore[index]
    [row] = stack.usage_rows()
    # The upstream broke the stream; the client did not leave.
    assert (row["tags"]["status"], row["tags"]["error"]) == ("partial", "upstream_stream_broken")
    input_tokens = -(-len(orjson.dumps(messages)) // 4)
    assert row["meters"] == {"input_tokens": input_tokens, "output_tokens": 2, "requests": 1, "estimated": 1}
    assert row["credits"] == cost(input_tokens, 2)
    assert_nothing_held(stack, org_id, row["credits"])


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_stream_line_too_long_to_read_breaks_the_stream(stack: Stack, encoding: str) -> None:
    # Gzip shrinks the 4 MiB line to a few KiB: the bound is on the line as inflated.
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    content = "hello #longline" + (" #gzip" if encoding == "gzip" else "")
    assert_broken_after_two_deltas(stack, org_id, secret, content)


@pytest.mark.parametrize("include_usage", [True, False])
def test_a_chunk_whose_choices_are_not_a_list_breaks_the_stream(stack: Stack, include_usage: bool) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    assert_broken_after_two_deltas(stack, org_id, secret, "hello #badchoices", include_usage=include_usage)


def test_a_chunk_too_deep_to_write_breaks_the_stream_and_its_delta_is_not_charged(stack: Stack) -> None:
    # The client did not ask for usage: the gateway has to re-write each chunk without it.
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    assert_broken_after_two_deltas(stack, org_id, secret, "hello #deepchunk")


def test_a_chunk_too_deep_to_write_is_relayed_as_is_when_nothing_needs_rewriting(stack: Stack) -> None:
    assert_streamed_whole(stack, "hello #deepchunk")


def test_a_broken_stream_ends_with_a_complete_body_and_an_openai_error_event(stack: Stack) -> None:
    """Read raw: the HTTP body ends cleanly (not cut mid-chunk) after an OpenAI-shaped error."""
    stack.deploy(name="mock-gpt")
    _, _, secret = stack.org_with_key("acme", "10")
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}) as client, \
            client.stream("POST", "/v1/chat/completions", json={
                "model": "mock-gpt", "stream": True, "max_tokens": 5,
                "messages": [{"role": "user", "content": "hello #badchoices"}]}) as answer:
        assert answer.status_code == 200
        events = [line for line in answer.iter_lines() if line]  # raises if the body is cut
    assert len(events) == 3 and all(event.startswith("data: ") for event in events)
    error = orjson.loads(events[-1][6:])["error"]
    assert set(error) == {"type", "message", "param", "code"} and error["code"] == "upstream_stream_broken"
    assert "choices" in error["message"]


# ====================================================================== connections never made
@pytest.fixture
def blackhole() -> Iterator[str]:
    """A base_url whose connections are never accepted: a listener whose backlog is full, so
    the kernel drops further SYNs and a connect hangs until it times out."""
    with contextlib.ExitStack() as cleanup:
        listener = cleanup.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = cleanup.enter_context(socket.socket())
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        probe = cleanup.enter_context(socket.socket())
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:
            pytest.skip("this kernel accepts connections past a full backlog")
        yield f"http://127.0.0.1:{port}/v1"


def test_a_connect_timeout_costs_no_per_request_fee(stack: Stack, blackhole: str) -> None:
    # With a timeout_s of 5 s or less the connect timeout is the whole timeout (aiohttp then
    # raises a plain TimeoutError): the request still never reached the upstream.
    stack.deploy(name="mock-gpt", base_url=blackhole, timeout_s=1, prices=PRICES_WITH_FEE)
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    for stream in (False, False, True):  # a hold first, then overlapped; a stream
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="mock-gpt", messages=HELLO, max_tokens=5, stream=stream)
        assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    assert_nothing_held(stack, org_id, 0)
    rows = stack.usage_rows()
    assert [(row["credits"], row["tags"]["status"], row["tags"]["error"]) for row in rows] == [
        (0, "error", "upstream_timeout")] * 3


def test_a_timeout_after_the_request_was_sent_costs_the_per_request_fee(stack: Stack) -> None:
    stack.deploy(name="mock-gpt", timeout_s=0.3, prices=PRICES_WITH_FEE)  # #slow answers after 1 s
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    for stream in (False, False, True):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "#slow"}],
                                           max_tokens=5, stream=stream)
        assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    assert_nothing_held(stack, org_id, 3 * FEE)
    assert [row["credits"] for row in stack.usage_rows()] == [FEE] * 3
