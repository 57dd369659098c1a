"""Tenant isolation for every org endpoint: wrong org in the path, guessed ids, a revoked key and
a key without the needed scope are all refused, and nothing of the other org leaks."""

from __future__ import annotations

from typing import Any

from tests.e2e.api.conftest import Server

ALL_SCOPES = ["inference", "manage", "read"]
# (method, path, body, needed scope or "admin", id kind the path names)
ENDPOINTS: list[tuple[str, str, Any, str, str | None]] = [
    ("GET", "/orgs/{org}", None, "read", None),
    ("PATCH", "/orgs/{org}", {"name": "renamed"}, "admin", None),
    ("GET", "/orgs/{org}/projects", None, "read", None),
    ("POST", "/orgs/{org}/projects", {"name": "p2"}, "manage", None),
    ("GET", "/orgs/{org}/projects/{project}", None, "read", "project"),
    ("GET", "/orgs/{org}/keys", None, "manage", None),
    ("POST", "/orgs/{org}/keys", {"name": "x", "scopes": ["read"]}, "manage", None),
    ("GET", "/orgs/{org}/keys/{key}", None, "manage", "key"),
    ("DELETE", "/orgs/{org}/keys/{key}", None, "manage", "key"),
    ("GET", "/orgs/{org}/grants", None, "read", None),
    ("POST", "/orgs/{org}/grants", {"credits": "1"}, "admin", None),
    ("GET", "/orgs/{org}/grants/{grant}", None, "read", "grant"),
    ("POST", "/orgs/{org}/grants/{grant}/void", None, "admin", "grant"),
    ("GET", "/orgs/{org}/holds", None, "read", None),
    ("POST", "/orgs/{org}/holds", {"credits": "1"}, "inference", None),
    ("GET", "/orgs/{org}/holds/{hold}", None, "read", "hold"),
    ("POST", "/orgs/{org}/holds/{hold}/post", {"credits": "1"}, "inference", "hold"),
    ("POST", "/orgs/{org}/holds/{hold}/void", None, "inference", "hold"),
    ("GET", "/orgs/{org}/balance", None, "read", None),
    ("GET", "/orgs/{org}/journal", None, "read", None),
    ("GET", "/orgs/{org}/purchases", None, "read", None),
    ("POST", "/orgs/{org}/purchases", {"bundle_id": "bnd_x", "payment_reference": "p"}, "manage", None),
    ("GET", "/orgs/{org}/usage", None, "read", None),
    ("GET", "/orgs", None, "admin", None),
    ("POST", "/orgs", {"name": "intruder"}, "admin", None),
    ("POST", "/bundles", {"name": "b", "price": "1", "credits": "1"}, "admin", None),
]


def _org_with_things(server: Server, name: str) -> dict[str, str]:
    org_id = server.new_org(name, credits="50")
    with server.admin() as admin:
        project = admin.post(f"/api/v1/orgs/{org_id}/projects", json={"name": "p"}).json()["id"]
        grant = admin.get(f"/api/v1/orgs/{org_id}/grants").json()["data"][0]["id"]
        hold = admin.post(f"/api/v1/orgs/{org_id}/holds", json={"credits": "1"}).json()["id"]
        key = admin.post(f"/api/v1/orgs/{org_id}/keys", json={"name": "k", "scopes": ["read"]}).json()["id"]
    return {"org": org_id, "project": project, "grant": grant, "hold": hold, "key": key}


def _call(client: Any, method: str, path: str, body: Any) -> Any:
    return client.request(method, "/api/v1" + path, json=body)


def test_every_endpoint_isolates_tenants(server: Server) -> None:
    mine = _org_with_things(server, "mine")
    theirs = _org_with_things(server, "theirs")
    full_key = server.new_key(mine["org"], ALL_SCOPES)
    with server.admin() as admin:
        created = admin.post(f"/api/v1/orgs/{mine['org']}/keys", json={"name": "r", "scopes": ALL_SCOPES}).json()
        revoked_key = created["key"]
        assert admin.delete(f"/api/v1/orgs/{mine['org']}/keys/{created['id']}").status_code == 200
    lacking = {scope: server.new_key(mine["org"], [s for s in ALL_SCOPES if s != scope])
               for scope in ALL_SCOPES}
    before = _snapshot(server, theirs["org"])
    with server.client(full_key) as full, server.client(revoked_key) as revoked:
        for method, template, body, scope, resource in ENDPOINTS:
            wrong_org = template.format(**theirs)
            answer = _call(full, method, wrong_org, body)
            assert answer.status_code == 403, (method, template, "wrong org", answer.text)
            assert _call(revoked, method, template.format(**mine), body).status_code == 401, template
            with server.client(lacking.get(scope, full_key)) as weak:
                answer = _call(weak, method, template.format(**mine), body)
                assert answer.status_code == 403, (method, template, "scope", answer.text)
            if resource is not None and scope != "admin":
                guessed = template.format(**{**mine, resource: theirs[resource]})
                answer = _call(full, method, guessed, body)
                assert answer.status_code == 404, (method, template, "guessed id", answer.text)
    assert _snapshot(server, theirs["org"]) == before


def test_events_for_another_org_are_rejected(server: Server) -> None:
    mine = server.new_org("me", credits="5")
    theirs = server.new_org("them", credits="5")
    key = server.new_key(mine, ["inference"])
    event = {"specversion": "1.0", "type": "creditgate.usage", "id": "x1", "source": "s",
             "subject": theirs, "time": "2026-01-01T00:00:00Z",
             "data": {"model": "gpt-test", "meters": {"input_tokens": 10}}}
    with server.client(key) as client:
        result = client.post("/api/v1/events", json=[event]).json()["results"][0]
    assert result["status"] == "rejected" and result["reason"] == "forbidden"
    with server.admin() as admin:
        assert admin.get(f"/api/v1/orgs/{theirs}/balance").json()["available"] == "5"
    read_only = server.new_key(mine, ["read"])
    with server.client(read_only) as client:
        assert client.post("/api/v1/events", json=[]).status_code == 403


def _snapshot(server: Server, org_id: str) -> Any:
    with server.admin() as admin:
        return (admin.get(f"/api/v1/orgs/{org_id}/balance").json(),
                admin.get(f"/api/v1/orgs/{org_id}").json(),
                [k["revoked_at"] for k in admin.get(f"/api/v1/orgs/{org_id}/keys").json()["data"]])
