"""Deploy the demo ONNX model through the API and predict through the gateway."""

from __future__ import annotations

import base64

import httpx
from tests.e2e.gateway.conftest import Stack

from creditgate.gateway.demo_model import DEMO_INPUT, demo_model_bytes
from creditgate.ledger.credits import format_amount, parse_amount

ONNX_PRICES = {"requests": "0.001", "items": "0.0001", "compute_ms": "0.01", "per": 1}


def test_upload_multipart_then_predict_charges_measured_compute(stack: Stack) -> None:
    model = demo_model_bytes()
    response = stack.admin.post("/api/v1/deployments", files={"file": ("iris.onnx", model)},
                                data={"name": "iris", "backend": "onnx", "timeout_s": "1", "prices": '{"requests": "0.001", '
                                      '"items": "0.0001", "compute_ms": "0.01", "per": 1}'})
    assert response.status_code == 201, response.text
    assert response.json()["backend"] == "onnx" and response.json()["kind"] == "predict"
    # The hold covers the whole timeout of compute (1 s = 10 credits); the charge is what ran.
    org_id, _, secret = stack.org_with_key("ml", "50")
    with httpx.Client(base_url=stack.url, headers={"authorization": f"Bearer {secret}"}) as client:
        answer = client.post("/v1/predict/iris", json={"inputs": {"X": DEMO_INPUT}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["outputs"]["label"] == [0, 2]
        usage = body["usage"]
        assert usage["items"] == 2 and usage["compute_ms"] >= 1
        expected = (parse_amount("0.001") + 2 * parse_amount("0.0001")
                    + usage["compute_ms"] * parse_amount("0.01"))
        assert answer.headers["x-creditgate-cost"] == format_amount(expected)
        balance = stack.services.ledger.balance(org_id)
        assert balance.available == parse_amount("50") - expected and balance.pending == 0
        [row] = stack.usage_rows()
        assert row["meters"] == {"requests": 1, "items": 2, "compute_ms": usage["compute_ms"]}
        bad = client.post("/v1/predict/iris", json={"inputs": {"X": [["not", "numbers"]]}})
        assert bad.status_code == 422
        assert stack.services.ledger.balance(org_id).pending == 0


def test_upload_base64_json(stack: Stack) -> None:
    encoded = base64.b64encode(demo_model_bytes()).decode()
    response = stack.admin.post("/api/v1/deployments", json={
        "name": "iris-b64", "backend": "onnx", "model_base64": encoded, "prices": ONNX_PRICES, "timeout_s": 1})
    assert response.status_code == 201, response.text
    _, _, secret = stack.org_with_key("ml", "50")
    answer = httpx.post(f"{stack.url}/v1/predict/iris-b64", json={"inputs": DEMO_INPUT},
                        headers={"authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json()["outputs"]["label"] == [0, 2]


def test_deployment_management(stack: Stack, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cryptography.fernet import Fernet

    monkeypatch.setenv("CREDITGATE_SECRET_KEY", Fernet.generate_key().decode())
    created = stack.deploy(name="mock-gpt", api_key="sk-upstream-secret")
    assert "api_key" not in created and created["has_stored_api_key"] is True
    assert "sk-upstream-secret" not in stack.admin.get("/api/v1/deployments").text
    updated = stack.admin.patch("/api/v1/deployments/mock-gpt", json={"concurrency_max": 3})
    assert updated.status_code == 200 and updated.json()["concurrency_max"] == 3
    assert stack.admin.get(f"/api/v1/deployments/{created['id']}").json()["name"] == "mock-gpt"
    assert stack.admin.post("/api/v1/deployments", json={"name": "x", "backend": "openai"}).status_code == 422
    assert stack.admin.post("/api/v1/deployments", json={
        "name": "mock-gpt", "backend": "openai", "base_url": "http://127.0.0.1:1/v1",
        "prices": {"input_tokens": "1"}}).status_code == 409
    assert stack.admin.delete("/api/v1/deployments/mock-gpt").status_code == 200
    assert stack.admin.get("/api/v1/deployments/mock-gpt").status_code == 404
    _, _, secret = stack.org_with_key("acme", "1")
    org_key = httpx.get(f"{stack.url}/api/v1/deployments", headers={"authorization": f"Bearer {secret}"})
    assert org_key.status_code == 403
