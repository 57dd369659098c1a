"""Plain answers that a misbehaving upstream may send: usage the gateway cannot read, an error
under a 200 status, and an answer that cannot be relayed. None may be charged as zero when work was
delivered, none may become the gateway's 500, and none may leave a hold.

The upstream here answers each model name with a fixed body (an edge we do not own).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.e2e.gateway.conftest import Stack, cost
from tests.support.servers import serve

from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

CHOICES = [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]


def nested(levels: int) -> Any:
    value: Any = "deep"
    for _ in range(levels):
        value = [value]
    return value


ANSWERS: dict[str, Any] = {
    "good": {"choices": CHOICES, "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
    "usage-strings": {"choices": CHOICES, "usage": {"prompt_tokens": "7", "completion_tokens": "2"}},
    "usage-floats": {"choices": CHOICES, "usage": {"prompt_tokens": 7.0, "completion_tokens": 2.0}},
    "usage-negative": {"choices": CHOICES, "usage": {"prompt_tokens": -7, "completion_tokens": 2}},
    "usage-empty": {"choices": CHOICES, "usage": {}},
    "usage-other-names": {"choices": CHOICES, "usage": {"input_tokens": 7, "output_tokens": 2}},
    "usage-huge": {"choices": CHOICES, "usage": {"prompt_tokens": 2**62, "completion_tokens": 2**62}},
    "error-under-200": {"error": {"message": "model overloaded", "type": "server_error", "code": "overloaded"}},
    "too-deep": {"choices": CHOICES, "usage": {"prompt_tokens": 7, "completion_tokens": 2},
                 "logprobs": nested(300)},
}


def fixed_upstream() -> Starlette:
    async def chat(request: Request) -> Response:
        model = orjson.loads(await request.body())["model"]
        answer = ANSWERS[model]
        body = orjson.dumps(answer) if model != "too-deep" else _deep_json(answer)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _deep_json(answer: dict[str, Any]) -> bytes:
    # orjson writes at most 255 levels; the upstream is free to send more (orjson reads 1,024).
    import json

    return json.dumps(answer).encode()


@pytest.fixture
def odd_upstream() -> Iterator[str]:
    with serve(fixed_upstream()) as url:
        yield url


def ask(stack: Stack, secret: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}
    return httpx.post(f"{stack.url}/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {secret}"})


def deploy_all(stack: Stack, upstream: str) -> None:
    for name in ANSWERS:
        stack.deploy(name=name, base_url=f"{upstream}/v1")


@pytest.mark.parametrize("model", ["usage-strings", "usage-floats", "usage-negative", "usage-empty",
                                   "usage-other-names", "usage-huge"])
def test_usage_the_gateway_cannot_read_is_charged_as_the_bound_never_as_zero(
        stack: Stack, odd_upstream: str, model: str) -> None:
    deploy_all(stack, odd_upstream)
    org_id, _, secret = stack.org_with_key("acme", "10")
    good, odd = ask(stack, secret, "good"), ask(stack, secret, model)
    assert good.status_code == 200 and odd.status_code == 200, odd.text
    assert good.headers["x-creditgate-cost"] == "0.00225"  # 7 in, 2 out, as reported
    charged = parse_amount(odd.headers["x-creditgate-cost"])
    assert charged > cost(7, 2)  # the bound: at most 5 prompt tokens ("hello") and 10 output tokens
    records = stack.usage_rows()
    assert records[-1]["meters"].get("estimated") == 1 and records[-1]["credits"] == charged
    assert stack.services.ledger.list_holds(org_id, status="pending") == []
    assert verify(stack.services.database).ok


@pytest.mark.parametrize(("model", "code"), [("error-under-200", "overloaded"),
                                             ("too-deep", "upstream_bad_answer")])
def test_an_answer_that_is_an_error_or_cannot_be_relayed_is_a_free_502(
        stack: Stack, odd_upstream: str, model: str, code: str) -> None:
    deploy_all(stack, odd_upstream)
    org_id, _, secret = stack.org_with_key("acme", "10")
    answer = ask(stack, secret, model)
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == code
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (10_000_000, 0)  # nothing charged or held
    assert [record["tags"]["status"] for record in stack.usage_rows()] == ["error"]
    assert verify(stack.services.database).ok
