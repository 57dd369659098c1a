"""Out-of-range timestamps over HTTP: a 422 naming the field, nothing written, the org still readable.

The timestamps parse (a real date plus an offset) but land outside years 1..9999 in UTC; before
the bound they were stored and every later read of the org answered 500.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.e2e.api.conftest import Server

FAR_FUTURE = "9999-12-31T23:59:59-12:00"  # year 10000 in UTC
FAR_PAST = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
LAST = "8999-12-31T23:59:59.999999Z"
OUT_OF_RANGE = [FAR_FUTURE, FAR_PAST, "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"]


def _refused(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and error["param"] == field, error
    assert field in error["message"] and LAST in error["message"], error


def _org_state(admin: httpx.Client, org_id: str) -> dict[str, Any]:
    """Everything a refused request must leave unchanged; each read must also still answer 200."""
    reads = {"grants": f"/api/v1/orgs/{org_id}/grants", "balance": f"/api/v1/orgs/{org_id}/balance",
             "keys": f"/api/v1/orgs/{org_id}/keys", "journal": f"/api/v1/orgs/{org_id}/journal"}
    state = {}
    for name, path in reads.items():
        answer = admin.get(path)
        assert answer.status_code == 200, (name, answer.text)
        state[name] = answer.json()
    return state


@pytest.mark.parametrize("field", ["expires_at", "effective_at"])
def test_grant_times_out_of_range_are_refused_and_nothing_is_written(server: Server, field: str) -> None:
    org_id = server.new_org("acme")
    with server.admin() as admin:
        before = _org_state(admin, org_id)
        for value in OUT_OF_RANGE:
            _refused(admin.post(f"/api/v1/orgs/{org_id}/grants", json={"credits": "5", field: value}), field)
        assert _org_state(admin, org_id) == before


def test_key_expiry_out_of_range_is_refused_and_nothing_is_written(server: Server) -> None:
    org_id = server.new_org("acme")
    with server.admin() as admin:
        before = _org_state(admin, org_id)
        for value in OUT_OF_RANGE:
            _refused(admin.post(f"/api/v1/orgs/{org_id}/keys",
                                json={"name": "x", "scopes": ["read"], "expires_at": value}), "expires_at")
        assert _org_state(admin, org_id) == before


@pytest.mark.parametrize("param", ["start", "end"])
def test_usage_range_out_of_range_is_refused(server: Server, param: str) -> None:
    org_id = server.new_org("acme")
    with server.admin() as admin:
        for value in OUT_OF_RANGE:
            _refused(admin.get(f"/api/v1/orgs/{org_id}/usage", params={param: value}), param)


def test_quote_time_and_period_start_out_of_range_are_refused(server: Server) -> None:
    org_id = server.new_org("acme")
    with server.admin() as admin:
        before = _org_state(admin, org_id)
        for value in OUT_OF_RANGE:
            _refused(admin.post("/api/v1/quotes",
                                json={"model": "gpt-test", "usage": {"input_tokens": 1}, "at": value}), "at")
            _refused(admin.post(f"/api/v1/orgs/{org_id}/billing/close", json={"period_start": value}),
                     "period_start")
        assert _org_state(admin, org_id) == before


def test_the_extreme_accepted_times_are_stored_and_read_back(server: Server) -> None:
    org_id = server.new_org("acme", credits=None)
    with server.admin() as admin:
        grant = admin.post(f"/api/v1/orgs/{org_id}/grants", json={
            "credits": "5", "effective_at": "1970-01-01T00:00:00Z", "expires_at": LAST})
        assert grant.status_code == 201, grant.text
        key = admin.post(f"/api/v1/orgs/{org_id}/keys",
                         json={"name": "x", "scopes": ["read"], "expires_at": LAST})
        assert key.status_code == 201, key.text
        state = _org_state(admin, org_id)
        assert [(g["effective_at"], g["expires_at"]) for g in state["grants"]["data"]] == [
            ("1970-01-01T00:00:00Z", LAST)]
        assert state["balance"]["available"] == "5"
        assert [k["expires_at"] for k in state["keys"]["data"]] == [LAST]
        assert admin.get(f"/api/v1/orgs/{org_id}/usage", params={"end": LAST}).status_code == 200
        signed_in = admin.post("/dashboard/sign-in", data={"key": server.admin_key})
        assert signed_in.status_code == 303, signed_in.text
        assert admin.get(f"/dashboard/orgs/{org_id}").status_code == 200
