"""The REST resources over HTTP against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.e2e.api.conftest import Server


def _event(org_id: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "type": "creditgate.usage", "id": event_id, "source": "tests",
            "subject": org_id, "time": "2026-01-01T00:00:00Z",
            "data": {"model": "gpt-test", "meters": {"input_tokens": 1_000_000}, **data}}


def test_health_openapi_and_docs(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        spec = client.get("/api/v1/openapi.json").json()
        assert "/api/v1/orgs/{org_id}/balance" in spec["paths"]
        assert client.get("/api/v1/docs").status_code == 200


def test_org_project_key_grant_balance_flow(server: Server) -> None:
    with server.admin() as admin:
        created = admin.post("/api/v1/orgs", json={"name": "acme"})
        assert created.status_code == 201
        org_id = created.json()["id"]
        assert created.json()["name"] == "acme"
        assert admin.get(f"/api/v1/orgs/{org_id}").json()["name"] == "acme"
        assert admin.patch(f"/api/v1/orgs/{org_id}", json={"name": "acme2"}).json()["name"] == "acme2"
        assert org_id in [org["id"] for org in admin.get("/api/v1/orgs").json()["data"]]
        project = admin.post(f"/api/v1/orgs/{org_id}/projects", json={"name": "bot"}).json()
        grant = admin.post(f"/api/v1/orgs/{org_id}/grants", json={
            "credits": "100", "kind": "purchase", "scope": "inference", "priority": 10, "expires_at": None})
        assert grant.status_code == 201, grant.text
        key = admin.post(f"/api/v1/orgs/{org_id}/keys",
                         json={"name": "ci", "scopes": ["inference", "read"], "project_id": project["id"]})
        assert key.status_code == 201 and key.json()["key"].startswith("cg_")
        listed = admin.get(f"/api/v1/orgs/{org_id}/keys").json()["data"]
        assert listed and all("key" not in item for item in listed)
    with server.client(key.json()["key"]) as org:
        balance = org.get(f"/api/v1/orgs/{org_id}/balance").json()
        assert balance["available"] == "100" and balance["pending"] == "0"
        assert balance["grants"][0]["id"] == grant.json()["id"]
        assert balance["grants"][0]["remaining"] == "100"
        hold = org.post(f"/api/v1/orgs/{org_id}/holds", json={"credits": "10", "model": "gpt-test"})
        assert hold.status_code == 201, hold.text
        assert org.get(f"/api/v1/orgs/{org_id}/balance").json()["pending"] == "10"
        posted = org.post(f"/api/v1/orgs/{org_id}/holds/{hold.json()['id']}/post", json={"credits": "4"})
        assert posted.json()["status"] == "posted"
        assert org.get(f"/api/v1/orgs/{org_id}/balance").json()["available"] == "96"
        hold2 = org.post(f"/api/v1/orgs/{org_id}/holds", json={"credits": "1"}).json()
        assert org.post(f"/api/v1/orgs/{org_id}/holds/{hold2['id']}/void").json()["status"] == "voided"
        too_much = org.post(f"/api/v1/orgs/{org_id}/holds", json={"credits": "1000"})
        assert too_much.status_code == 402
        assert too_much.json()["error"]["code"] == "insufficient_credits"
        page1 = org.get(f"/api/v1/orgs/{org_id}/journal", params={"limit": 2}).json()
        assert len(page1["data"]) == 2 and page1["has_more"]
        page2 = org.get(f"/api/v1/orgs/{org_id}/journal",
                        params={"limit": 2, "after": page1["next_cursor"]}).json()
        assert page2["data"][0]["seq"] == page1["data"][-1]["seq"] + 1
        assert org.get(f"/api/v1/orgs/{org_id}/journal", params={"limit": 5000}).status_code == 422


def test_events_and_usage_over_http(server: Server) -> None:
    org_id = server.new_org("metered", credits="10")
    key = server.new_key(org_id, ["inference", "read"])
    batch = [_event(org_id, "e1", tags={"purpose": "support"}), _event(org_id, "e1"),
             _event(org_id, "e2", model="nope"), {"type": "bogus"}]
    with server.client(key) as org:
        answer = org.post("/api/v1/events", json=batch)
        assert answer.status_code == 200, answer.text
        statuses = [(item["status"], item.get("reason")) for item in answer.json()["results"]]
        assert statuses == [("accepted", None), ("duplicate", None), ("rejected", "unknown_model"),
                            ("rejected", "invalid_field")]
        assert answer.json()["results"][0]["credits"] == "2"
        again = org.post("/api/v1/events", json=batch[:1]).json()
        assert again["results"][0]["status"] == "duplicate"
        assert org.get(f"/api/v1/orgs/{org_id}/balance").json()["available"] == "8"
        usage = org.get(f"/api/v1/orgs/{org_id}/usage", params={
            "start": "2025-12-31T00:00:00Z", "end": "2026-01-02T00:00:00Z",
            "group_by": "tag:purpose"}).json()
        assert usage["totals"]["credits"] == "2"
        assert usage["data"][0]["tag:purpose"] == "support"
        csv_text = org.get(f"/api/v1/orgs/{org_id}/usage", params={
            "start": "2025-12-31T00:00:00Z", "end": "2026-01-02T00:00:00Z", "format": "csv"}).text
        assert csv_text.splitlines()[0] == "bucket_start,credits,events,input_tokens"


def test_bundles_and_idempotent_purchase(server: Server) -> None:
    org_id = server.new_org("buyer", credits=None)
    key = server.new_key(org_id, ["manage", "read"])
    with server.admin() as admin:
        bundle = admin.post("/api/v1/bundles", json={
            "name": "starter", "price": "10", "credits": "1000", "bonus_credits": "100",
            "validity_days": 30, "rollover": "none"})
        assert bundle.status_code == 201, bundle.text
        bundle_id = bundle.json()["id"]
        assert admin.put(f"/api/v1/bundles/{bundle_id}", json={
            "name": "starter", "price": "10", "credits": "1000", "bonus_credits": "200"}).status_code == 200
    with server.client(key) as org:
        assert [b["id"] for b in org.get("/api/v1/bundles").json()["data"]] == [bundle_id]
        body = {"bundle_id": bundle_id, "payment_reference": "pay_1"}
        first = org.post(f"/api/v1/orgs/{org_id}/purchases", json=body)
        assert first.status_code == 201, first.text
        second = org.post(f"/api/v1/orgs/{org_id}/purchases", json=body)
        assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
        assert len(first.json()["grant_ids"]) == 2
        assert org.get(f"/api/v1/orgs/{org_id}/balance").json()["available"] == "1200"


def test_idempotency_key_replays_and_conflicts(server: Server) -> None:
    org_id = server.new_org("idem", credits=None)
    with server.admin() as admin:
        url = f"/api/v1/orgs/{org_id}/grants"
        first = admin.post(url, json={"credits": "5"}, headers={"Idempotency-Key": "k1"})
        replay = admin.post(url, json={"credits": "5"}, headers={"Idempotency-Key": "k1"})
        assert first.status_code == replay.status_code == 201
        assert first.json() == replay.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        conflict = admin.post(url, json={"credits": "6"}, headers={"Idempotency-Key": "k1"})
        assert conflict.status_code == 409
        assert admin.get(f"/api/v1/orgs/{org_id}/balance").json()["available"] == "5"


def test_error_shapes(server: Server) -> None:
    with server.client() as anonymous:
        assert anonymous.get("/api/v1/orgs").status_code == 401
        assert set(anonymous.get("/api/v1/orgs").json()["error"]) >= {"type", "message", "param", "code"}
    with server.admin() as admin:
        for answer, status in ((admin.get("/api/v1/nowhere"), 404), (admin.delete("/api/v1/orgs"), 405),
                               (admin.post("/api/v1/orgs", json={"nme": 1}), 422),
                               (admin.post("/api/v1/orgs", content=b"{", headers={"content-type": "application/json"}), 422),
                               (admin.post("/api/v1/events", content=b"x" * (5 * 1024 * 1024)), 413),
                               (admin.post("/api/v1/events", json=[{}] * 1001), 413)):
            assert answer.status_code == status, answer.text
            assert set(answer.json()["error"]) >= {"type", "message", "param", "code"}
