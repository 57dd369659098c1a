"""The official openai SDK against creditgate and a test upstream, both on loopback."""

from __future__ import annotations

import httpx
import openai
import pytest
from tests.e2e.gateway.conftest import FEE, PRICES_WITH_FEE, Stack, cost

from creditgate.ledger.credits import format_amount, parse_amount
from creditgate.ledger.verify import verify


def test_chat_is_charged_from_upstream_usage(stack: Stack) -> None:
    stack.deploy(name="mock-gpt", upstream_model="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hello there"}], max_tokens=50,
        user="alice", metadata={"team": "search"}, extra_headers={"x-creditgate-tags": "env=test"})
    completion = raw.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    usage = completion.usage
    expected = cost(usage.prompt_tokens, usage.completion_tokens)
    assert raw.headers["x-creditgate-cost"] == format_amount(expected)
    assert raw.headers["x-creditgate-balance"] == format_amount(parse_amount("10") - expected)
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") - expected and balance.pending == 0
    [row] = stack.usage_rows()
    assert row["credits"] == expected and row["key_id"] == key_id and row["model"] == "mock-gpt"
    assert row["meters"]["input_tokens"] == usage.prompt_tokens
    assert row["tags"]["user"] == "alice" and row["tags"]["team"] == "search" and row["tags"]["env"] == "test"
    assert row["tags"]["status"] == "ok" and "error" not in row["tags"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming_with_and_without_include_usage(stack: Stack, include_usage: bool) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "stream please"}], stream=True, **options))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 tok4 "
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == (1 if include_usage else 0)
    reported = stack.upstream.state.reported[-1]  # the gateway always asks the upstream for usage
    expected = cost(reported["prompt_tokens"], reported["completion_tokens"])
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") - expected and balance.pending == 0


def test_completions_and_embeddings(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    stack.deploy(name="mock-embed", kind="embedding")
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    completion = client.completions.create(model="mock-gpt", prompt="once upon a time", max_tokens=3)
    assert completion.choices[0].text == "tok0 tok1 tok2 "
    embedding = client.embeddings.create(model="mock-embed", input=["a b c", "d"])
    assert len(embedding.data) == 2
    expected = cost(completion.usage.prompt_tokens, 3) + cost(embedding.usage.prompt_tokens, 0)
    assert stack.services.ledger.balance(org_id).available == parse_amount("10") - expected


def test_models_lists_what_the_key_may_use(stack: Stack) -> None:
    _, _, secret = stack.org_with_key("acme", "1")
    stack.deploy(name="mock-gpt")
    stack.deploy(name="private-model", orgs=["org_someone_else"])
    names = [model.id for model in stack.openai(secret).models.list()]
    assert names == ["mock-gpt"]


def test_insufficient_credits_is_402_not_429(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("poor", "0.01")
    with pytest.raises(openai.APIStatusError) as caught:
        stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=1000)
    assert caught.value.status_code == 402
    error = caught.value.body
    assert error["type"] == "insufficient_credits" and error["code"] == "insufficient_credits"
    assert error["param"] is None and error["available"] == "0.01"
    assert "0.01 available" in error["message"] and "required" in error["message"]
    assert stack.services.ledger.balance("poor" and org_id).pending == 0


def test_rate_limited_key_gets_429_with_retry_after(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    _, key_id, secret = stack.org_with_key("busy", "10")
    response = stack.admin.put(f"/api/v1/rate-limits/key:{key_id}", json={"requests_per_min": 2})
    assert response.status_code == 200, response.text
    client = stack.openai(secret)
    for _ in range(2):
        client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}], max_tokens=5)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    stack.clock.advance(seconds=60)  # the next minute opens a new window
    client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}], max_tokens=5)


def test_revoked_key_is_refused(stack: Stack) -> None:
    from creditgate.api import keystore

    stack.deploy(name="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("gone", "10")
    keystore.revoke_key(stack.services, org_id, key_id)
    with pytest.raises(openai.AuthenticationError):
        stack.openai(secret).chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}])


def test_unknown_model_is_404(stack: Stack) -> None:
    _, _, secret = stack.org_with_key("acme", "10")
    with pytest.raises(openai.NotFoundError) as caught:
        stack.openai(secret).chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["code"] == "model_not_found"


def test_an_upstream_cookie_is_not_carried_into_the_next_request(stack: Stack) -> None:
    """One upstream session serves every organization: what an upstream sets for one request
    (a load balancer's or a hosted API's cookie) must not ride along on another's. (By host name:
    aiohttp's default jar keeps no cookies of a bare IP address.)"""
    stack.deploy(name="mock-gpt", base_url=stack.upstream_url.replace("127.0.0.1", "localhost") + "/v1")
    for name in ("first", "second"):
        _, _, secret = stack.org_with_key(name, "10")
        stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hello #cookie"}], max_tokens=5)
    assert stack.upstream.state.cookies_seen == [None, None]


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_redirect_is_not_followed(stack: Stack, stream: bool) -> None:
    """Following it would re-send the request, and the deployment's credential, wherever the
    upstream points."""
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    calls = len(stack.upstream.state.reported)
    with pytest.raises(openai.APIStatusError) as caught:
        stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "#redirect"}], max_tokens=5, stream=stream)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_redirect"
    assert "?again=1" in caught.value.message
    assert len(stack.upstream.state.reported) == calls  # the redirect's target was never asked
    assert stack.services.ledger.balance(org_id).available == parse_amount("10")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_answer_past_the_size_cap_is_refused_and_free(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                                        declared: bool) -> None:
    from creditgate.gateway import upstream

    monkeypatch.setattr(upstream, "ANSWER_BYTES_MAX", 100)
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    content = "hello" if declared else "hello #chunked"
    with pytest.raises(openai.APIStatusError) as caught:
        stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": content}], max_tokens=5)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_answer_too_large"
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10"), 0)
    monkeypatch.setattr(upstream, "ANSWER_BYTES_MAX", 10_000)
    answer = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": content}], max_tokens=5)
    assert answer.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "


def test_upstream_error_passes_through_and_charges_nothing(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    with pytest.raises(openai.InternalServerError) as caught:
        stack.openai(secret).chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "#error500"}])
    assert caught.value.status_code == 500 and "the upstream broke" in str(caught.value)
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") and balance.pending == 0
    [row] = stack.usage_rows()  # a free failure leaves a record too, saying what ended it
    assert (row["credits"], row["meters"]) == (0, {})
    # The gateway's own kind of failure; the upstream's body (code "boom") went to the client.
    assert caught.value.code == "boom"
    assert (row["tags"]["status"], row["tags"]["error"]) == ("error", "upstream_error")


def test_an_upstream_that_cannot_be_reached_is_502_and_free_even_with_a_fee(stack: Stack) -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    stack.deploy(name="mock-gpt", base_url=f"http://127.0.0.1:{port}/v1", prices=PRICES_WITH_FEE)
    org_id, _, secret = stack.org_with_key("acme", "10")
    with pytest.raises(openai.APIStatusError) as caught:
        stack.openai(secret).chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_unreachable"  # type: ignore[index]
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10"), 0)  # the fee is for requests that got there
    [row] = stack.usage_rows()
    assert (row["credits"], row["tags"]["error"]) == (0, "upstream_unreachable")


def test_upstream_timeout_is_504_and_free(stack: Stack) -> None:
    stack.deploy(name="mock-slow", timeout_s=0.2)
    org_id, _, secret = stack.org_with_key("acme", "10")
    with pytest.raises(openai.APIStatusError) as caught:
        stack.openai(secret).chat.completions.create(
            model="mock-slow", messages=[{"role": "user", "content": "#slow"}])
    assert caught.value.status_code == 504
    assert stack.services.ledger.balance(org_id).available == parse_amount("10")
    [row] = stack.usage_rows()
    assert (row["credits"], row["tags"]["status"], row["tags"]["error"]) == (0, "error", "upstream_timeout")


def test_default_cap_is_sent_upstream_and_held(stack: Stack) -> None:
    stack.deploy(name="mock-gpt", max_tokens_default=3)
    _, _, secret = stack.org_with_key("acme", "10")
    completion = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "no limit given"}])
    assert completion.usage.completion_tokens == 3  # the upstream obeyed the cap creditgate sent


def test_overreporting_upstream_posts_hold_and_debits_excess(stack: Stack) -> None:
    """An upstream that reports more than was held: the hold is posted in full, the excess is
    debited from free credits (then overdraft), and the usage record keeps the true total."""
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    raw = stack.openai(secret).chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "#overreport"}], max_tokens=2)
    usage = raw.parse().usage
    assert usage.completion_tokens == 100  # far above the 2 held
    expected = cost(usage.prompt_tokens, usage.completion_tokens)
    assert raw.headers["x-creditgate-cost"] == format_amount(expected)
    balance = stack.services.ledger.balance(org_id)
    assert balance.available == parse_amount("10") - expected and balance.pending == 0
    [row] = stack.usage_rows()
    assert row["credits"] == expected


def test_what_an_overreporting_upstream_costs_beyond_every_credit_is_recorded_as_uncollected(
        stack: Stack) -> None:
    """No overdraft and too few credits for the excess: the hold is posted, the excess (debited
    all or nothing) is not, and stays on the usage record as ``uncollected_credits``."""
    stack.deploy(name="mock-gpt")
    granted = parse_amount("0.02")  # covers the hold (two output tokens), not the 100 reported
    org_id, _, secret = stack.org_with_key("acme", "0.02")
    completion = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "#overreport"}], max_tokens=2)
    expected = cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert expected > granted
    balance = stack.services.ledger.balance(org_id)
    held = granted - balance.available
    assert 0 < held < granted and balance.pending == 0
    [row] = stack.usage_rows()
    assert row["credits"] == expected
    assert row["meters"]["uncollected_credits"] == expected - held
    assert verify(stack.services.database).ok


def test_a_per_request_fee_is_all_that_a_failed_upstream_request_costs(stack: Stack) -> None:
    fee = FEE
    stack.deploy(name="mock-gpt", prices=PRICES_WITH_FEE)
    org_id, _, secret = stack.org_with_key("acme", "10")
    for content in ("#error500", "#error500 again", "#error500 and again"):  # hold first, then overlapped
        with pytest.raises(openai.InternalServerError):
            stack.openai(secret).chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": content}], max_tokens=5)
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("10") - 3 * fee, 0)
    rows = stack.usage_rows()
    assert [(row["credits"], row["meters"]) for row in rows] == [(fee, {"requests": 1})] * 3
    assert {(row["tags"]["status"], row["tags"]["error"]) for row in rows} == {("error", "upstream_error")}
    completion = stack.openai(secret).chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hello"}], max_tokens=5)
    expected = cost(completion.usage.prompt_tokens, completion.usage.completion_tokens) + fee
    assert stack.services.ledger.balance(org_id).available == parse_amount("10") - 3 * fee - expected
    stack.clock.advance(seconds=1)  # the range ends now, and excludes its end
    answer = stack.admin.get(f"/api/v1/orgs/{org_id}/usage", params={"group_by": "tag:status"})
    assert answer.status_code == 200, answer.text
    by_status = {row["tag:status"]: (row["events"], parse_amount(row["credits"])) for row in answer.json()["data"]}
    assert by_status == {"error": (3, 3 * fee), "ok": (1, expected)}
    assert verify(stack.services.database).ok


@pytest.mark.parametrize(("field", "value"), [("stream", 1), ("stream", "true"), ("max_completion_tokens", 0),
                                              ("max_tokens", "10"), ("n", 0)])
def test_a_malformed_field_is_a_422_naming_it_and_nothing_is_forwarded_or_held(
        stack: Stack, field: str, value: object) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    answer = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], field: value})
    assert answer.status_code == 422
    assert answer.json()["error"]["param"] == field
    assert stack.upstream.state.reported == []
    assert stack.services.ledger.balance(org_id).available == parse_amount("10")
