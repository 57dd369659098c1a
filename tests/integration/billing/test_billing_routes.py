"""The billing REST routes in-process (FastAPI TestClient): the lead mounts ``router`` under
/api/v1 in create_app; here it is mounted the same way by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from creditgate.api import billing_routes, keystore
from creditgate.api.app import API_PREFIX, create_app
from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock


@pytest.fixture
def client(sqlite_url: str) -> Iterator[tuple[TestClient, ManualClock]]:
    clock = ManualClock()
    services = bootstrap(sqlite_url, clock=clock)
    _, admin_key = keystore.create_key(services, kind="admin", name="tests")
    app = create_app(services)
    if not any(getattr(route, "path", "").startswith(f"{API_PREFIX}/billing") for route in app.routes):
        app.include_router(billing_routes.router, prefix=API_PREFIX)
    with TestClient(app, headers={"Authorization": f"Bearer {admin_key}"}) as test_client:
        yield test_client, clock
    services.close()


def test_cycle_close_statement_verify_over_rest(client: tuple[TestClient, ManualClock]) -> None:
    http, clock = client
    org_id = http.post("/api/v1/orgs", json={"name": "rest-billing"}).json()["id"]
    assert http.put(f"/api/v1/orgs/{org_id}/billing/cycle",
                    json={"kind": "days", "length_days": 2, "timezone": "UTC"}).status_code == 200
    bad = http.post(f"/api/v1/orgs/{org_id}/billing/allowances",
                    json={"name": "plan", "credits": "10", "rollover": {"policy": "capped", "cap_percent": "101"}})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "rollover.cap_percent"
    assert http.get(f"/api/v1/orgs/{org_id}/billing/allowances").json()["data"] == []
    created = http.post(f"/api/v1/orgs/{org_id}/billing/allowances",
                        json={"name": "plan", "credits": "10", "rollover": {"policy": "full"}})
    assert created.status_code == 201
    future = http.post(f"/api/v1/orgs/{org_id}/billing/close", json={"period_start": "2030-01-01T00:00:00Z"})
    assert 400 <= future.status_code < 500
    training = http.post(f"/api/v1/orgs/{org_id}/training-jobs",
                         json={"model": "m", "dataset_ref": "d", "credits_per_gpu_hour": "1"})
    assert training.status_code == 201  # the allowance is any-scope, so training is allowed
    clock.advance(days=2)
    closed = http.post(f"/api/v1/orgs/{org_id}/billing/close", json={}).json()["closed"]
    statement_id = closed[0]["statement_id"]
    listed = http.get(f"/api/v1/orgs/{org_id}/statements").json()["data"]
    assert [item["id"] for item in listed] == [statement_id]
    document = http.get(f"/api/v1/orgs/{org_id}/statements/{statement_id}").json()
    assert http.post("/api/v1/statements/verify", json=document).json()["valid"] is True
    document["statement"]["closing_balance"] = "11"
    assert http.post("/api/v1/statements/verify", json=document).json()["valid"] is False
    keys = http.get("/api/v1/billing/public-keys", headers={"Authorization": ""}).json()["data"]
    assert keys and keys[0]["algorithm"] == "Ed25519"
    html = http.get(f"/api/v1/orgs/{org_id}/statements/{statement_id}", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html") and "<table>" in html.text
