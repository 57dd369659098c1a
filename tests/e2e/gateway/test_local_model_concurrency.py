"""A local model's ``concurrency_max`` changed through the API takes effect for the next requests,
while the requests already running (or queued) under the old limit finish normally."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
from tests.e2e.gateway.conftest import Stack

from creditgate.gateway import local_models
from creditgate.gateway.demo_model import DEMO_INPUT, demo_model_bytes
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

ONNX_PRICES = {"requests": "0.001", "items": "0.0001", "compute_ms": "0.01", "per": 1}


class GatedRuns:
    """Stands in for the model run: each run waits at a gate, and the most at once is counted."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.started = 0

    def __call__(self, session: Any, feeds: dict[str, Any]) -> Any:
        with self.lock:
            self.running += 1
            self.started += 1
        try:
            assert self.gate.wait(30), "the test never opened the gate"
            return self.real(session, feeds)
        finally:
            with self.lock:
                self.running -= 1

    def wait_started(self, count: int, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.started >= count:
                return True
            time.sleep(0.01)
        return False


def test_a_raised_concurrency_max_applies_without_breaking_requests_in_flight(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = GatedRuns(local_models._timed_run)
    monkeypatch.setattr(local_models, "_timed_run", runs)
    response = stack.admin.post("/api/v1/deployments", files={"file": ("iris.onnx", demo_model_bytes())},
                                data={"name": "iris", "backend": "onnx", "timeout_s": "20", "concurrency_max": "1",
                                      "prices": orjson.dumps(ONNX_PRICES).decode()})
    assert response.status_code == 201, response.text
    org_id, _, secret = stack.org_with_key("ml", "1000")

    def predict() -> httpx.Response:
        return httpx.post(f"{stack.url}/v1/predict/iris", json={"inputs": {"X": DEMO_INPUT}},
                          headers={"authorization": f"Bearer {secret}"}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        try:
            first = pool.submit(predict)
            assert runs.wait_started(1, 10)
            queued = pool.submit(predict)  # the only slot is taken: waits for it
            assert not runs.wait_started(2, 0.5)

            raised = stack.admin.patch("/api/v1/deployments/iris", json={"concurrency_max": 2})
            assert raised.status_code == 200 and raised.json()["concurrency_max"] == 2, raised.text
            after = pool.submit(predict)  # runs beside the first at once: the new limit is 2
            assert runs.wait_started(2, 5), "a request after the change still waited for the old single slot"
            assert runs.running == 2 and not queued.done()
        finally:
            runs.gate.set()
        answers = [future.result() for future in (first, queued, after)]
    assert [answer.status_code for answer in answers] == [200] * 3, [answer.text for answer in answers]
    assert all(answer.json()["outputs"]["label"] == [0, 2] for answer in answers)
    assert runs.started == 3
    charged = sum(parse_amount(answer.headers["x-creditgate-cost"]) for answer in answers)
    balance = stack.services.ledger.balance(org_id)
    assert (balance.available, balance.pending) == (parse_amount("1000") - charged, 0)
    assert verify(stack.services.database).ok
