"""Body size caps of the full server (``creditgate serve``): the REST API's 4 MiB, and the larger
caps of the gateway's own requests (8 MiB) and of model uploads, refused as 413 JSON errors, never
as a 500, whether the size is declared or the body is chunked."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import httpx
import orjson
from tests.e2e.gateway.conftest import Stack

from creditgate.api.limits import BODY_BYTES_MAX
from creditgate.gateway.config import BODY_BYTES_MAX as GATEWAY_BODY_BYTES_MAX
from creditgate.gateway.demo_model import demo_model_bytes

MIB = 1024 * 1024


def chunked(data: bytes) -> Iterator[bytes]:
    """A body sent in chunks with no Content-Length: its size is found only while it is read."""
    for start in range(0, len(data), MIB):
        yield data[start:start + MIB]


def chat_body(size: int) -> bytes:
    return orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "x" * size}],
                         "max_tokens": 5})


def test_a_chunked_chat_request_over_the_gateway_cap_is_a_413_not_a_500(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    _, _, secret = stack.org_with_key("acme", "10")
    headers = {"authorization": f"Bearer {secret}", "content-type": "application/json"}
    for content in (chat_body(GATEWAY_BODY_BYTES_MAX + 1), chunked(chat_body(GATEWAY_BODY_BYTES_MAX + 1))):
        answer = httpx.post(f"{stack.url}/v1/chat/completions", content=content, headers=headers, timeout=60)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"


def test_the_gateway_takes_requests_above_the_api_cap(stack: Stack) -> None:
    # 5 MiB of prompt: over the REST API's cap, under the gateway's. It reaches the pipeline, which
    # prices it (5 M tokens at most) above the 10 credits the organization has: 402, not 413.
    stack.deploy(name="mock-gpt")
    _, _, secret = stack.org_with_key("acme", "10")
    body = chat_body(BODY_BYTES_MAX + MIB)
    answer = httpx.post(f"{stack.url}/v1/chat/completions", content=chunked(body), timeout=60,
                        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"})
    assert answer.status_code == 402, answer.text
    assert answer.json()["error"]["code"] == "insufficient_credits"


def test_a_model_upload_above_the_api_cap_reaches_the_deployments_api(stack: Stack) -> None:
    # The demo model padded past the API's cap with ONNX metadata: a valid model of 5 MiB.
    import onnx

    model = onnx.load_from_string(demo_model_bytes())
    onnx.helper.set_model_props(model, {"padding": "x" * (BODY_BYTES_MAX + MIB)})
    data = model.SerializeToString()
    answer = stack.admin.post("/api/v1/deployments", json={
        "name": "big", "backend": "onnx", "model_base64": base64.b64encode(data).decode(), "timeout_s": 1,
        "prices": {"requests": "1", "per": 1}}, timeout=60)
    assert answer.status_code == 201, answer.text
    assert answer.json()["model_sha256"] == hashlib.sha256(data).hexdigest()


def test_other_api_routes_keep_the_api_cap(stack: Stack) -> None:
    answer = stack.admin.post("/api/v1/events", content=chunked(b"x" * (BODY_BYTES_MAX + MIB)),
                              headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
