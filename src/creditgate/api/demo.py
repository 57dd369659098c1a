"""Demo chapter: the story through the real HTTP API and the gateway, on a loopback server."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import orjson
import yaml

from creditgate.cli.common import console
from creditgate.clock import iso

SAMPLE_EVENTS = 3
ONNX_PRICES = {"requests": "0.01", "items": "0.001", "compute_ms": "0.05", "per": 1}


def run_chapter(services: Any, org_id: str, options: dict[str, Any]) -> None:
    from creditgate.api.app import create_app
    from creditgate.api.local_server import serve_in_background

    console.rule("creditgate demo — REST API and gateway over HTTP")
    admin_key = f"cg_admin_demo_{secrets.token_hex(16)}"
    services.extras["demo_admin_key"] = admin_key
    import os

    os.environ["CREDITGATE_ADMIN_KEY"] = admin_key
    with serve_in_background(create_app(services)) as url:
        console.print(f"Server listening on {url} (OpenAPI at {url}/api/v1/openapi.json)")
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30) as admin:
            _api_story(admin, url, org_id, services)
            _gateway_story(admin, url, org_id, options)


def _check(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text}")
    return response.json() if response.headers.get("content-type", "").startswith("application/json") else response.text


def _api_story(admin: httpx.Client, url: str, org_id: str, services: Any) -> None:
    from creditgate.pricing.samples import sample_text

    card = yaml.safe_load(sample_text("rate_card.yaml"))
    _check(admin.put("/api/v1/rate-card", content=orjson.dumps(card)))
    bundle = _check(admin.post("/api/v1/bundles", json={
        "name": "Starter 50", "price": "5", "currency": "USD", "credits": "500", "bonus_credits": "50",
        "validity_days": 90, "rollover": "none", "scope": "inference", "priority": 50}))
    purchase = _check(admin.post(f"/api/v1/orgs/{org_id}/purchases", headers={"Idempotency-Key": "demo-buy-1"},
                                 json={"bundle_id": bundle["id"], "payment_reference": "demo-invoice-1"}))
    again = admin.post(f"/api/v1/orgs/{org_id}/purchases", headers={"Idempotency-Key": "demo-buy-1"},
                       json={"bundle_id": bundle["id"], "payment_reference": "demo-invoice-1"})
    console.print(f"Bought bundle 'Starter 50' over HTTP (purchase {purchase.get('id')}); the retry with the "
                  f"same Idempotency-Key answered {again.status_code} with the same purchase, no new credits.")
    key = _check(admin.post(f"/api/v1/orgs/{org_id}/keys", json={"name": "demo-app",
                                                                "scopes": ["inference", "read"]}))
    services.extras["demo_org_key"] = key["key"]
    now = services.clock.now_us()
    events = [{"specversion": "1.0", "type": "creditgate.usage", "source": "demo/support-bot",
               "id": f"evt-{index}", "subject": org_id, "time": iso(now),
               "data": {"model": "gpt-4o-mini", "meters": {"input_tokens": 1200 + index, "output_tokens": 300},
                        "tags": {"purpose": "support-bot"}}} for index in range(SAMPLE_EVENTS)]
    events.append(dict(events[0]))  # a duplicate: reported, never charged twice
    answer = _check(admin.post("/api/v1/events", json=events))
    statuses = [item.get("status") for item in answer.get("results", answer if isinstance(answer, list) else [])]
    console.print(f"Ingested {len(events)} CloudEvents: {', '.join(str(s) for s in statuses)}")
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {key['key']}"}) as org_client:
        usage = _check(org_client.get(f"/api/v1/orgs/{org_id}/usage", params={"bucket": "day", "group_by": "model",
                                                                          "end": iso(now + 86_400_000_000)}))
        balance = _check(org_client.get(f"/api/v1/orgs/{org_id}/balance"))
    console.print(f"Usage by model today: {usage.get('totals')}")
    console.print(f"Balance over HTTP with the org key: available {balance['available']}, pending {balance['pending']}")


def _gateway_story(admin: httpx.Client, url: str, org_id: str, options: dict[str, Any]) -> None:
    import base64

    import openai

    from creditgate.gateway.demo_model import DEMO_INPUT, DEMO_MODEL_NAME, demo_model_bytes

    model = base64.b64encode(demo_model_bytes()).decode()
    _check(admin.post("/api/v1/deployments", json={
        "name": DEMO_MODEL_NAME, "backend": "onnx", "model_base64": model, "prices": ONNX_PRICES, "timeout_s": 1}))
    console.print(f"Deployed the demo ONNX model '{DEMO_MODEL_NAME}' (iris classifier trained with scikit-learn)")
    secret = _org_secret(admin, org_id)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
    for round_number in range(3):
        # The OpenAI SDK's generic post reaches creditgate's /v1/predict endpoint for local models.
        raw = client.post(f"/predict/{DEMO_MODEL_NAME}", body={"inputs": {"X": DEMO_INPUT}},
                          cast_to=httpx.Response)
        body = orjson.loads(raw.content)
        console.print(f"  prediction {round_number + 1}: labels {body['outputs'].get('label')}, "
                      f"{body['usage']['compute_ms']} ms compute, cost {raw.headers['x-creditgate-cost']}, "
                      f"balance {raw.headers['x-creditgate-balance']}")
    upstream = options.get("upstream")
    if upstream:
        upstream_model = options.get("upstream_model") or "llama3.2"
        _check(admin.post("/api/v1/deployments", json={
            "name": upstream_model, "backend": "openai", "base_url": upstream.rstrip("/"),
            "upstream_model": upstream_model, "prices": {"input_tokens": "15", "output_tokens": "60",
                                                        "per": 1000000}}))
        reply = client.chat.completions.with_raw_response.create(
            model=upstream_model, messages=[{"role": "user", "content": "Say hello in five words."}], max_tokens=32)
        console.print(f"  chat via {upstream}: {reply.parse().choices[0].message.content!r}, cost "
                      f"{reply.headers['x-creditgate-cost']}, balance {reply.headers['x-creditgate-balance']}")
    else:
        console.print("  (no --upstream given: skipping chat completions; try --upstream http://127.0.0.1:11434/v1)")


def _org_secret(admin: httpx.Client, org_id: str) -> str:
    key = _check(admin.post(f"/api/v1/orgs/{org_id}/keys", json={"name": "demo-gateway", "scopes": ["inference"]}))
    return str(key["key"])
