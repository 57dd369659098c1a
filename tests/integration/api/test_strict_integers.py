"""Integer fields of request bodies take JSON integers only: "10", 10.0 and true are refused
with a 422 naming the field, and nothing is written. Lax parsing would read them as 10 (or 1)
and store a value the client never sent as a number. Against a real server, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from creditgate.clock import ManualClock
from tests.e2e.api.conftest import Server, serve_api

LAX_INTEGERS = ["10", 10.0, True]


@pytest.fixture
def api(database_url: str, clock: ManualClock) -> Iterator[Server]:
    yield from serve_api(database_url, clock)


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # under /api/v1/orgs/{org}
    body: dict[str, Any]  # valid, apart from ``field``
    field: str
    valid: int
    state: str  # a GET under the org that shows whether anything was written


CASES = {
    "grant priority": Case("POST", "/grants", {"credits": "5"}, "priority", 7, "/grants"),
    # The timezone differs from the default, so that a write of anchor_day=1 (true) would show.
    "cycle anchor_day": Case("PUT", "/billing/cycle", {"kind": "monthly", "timezone": "Asia/Tokyo"},
                             "anchor_day", 10, "/billing/cycle"),
    "cycle length_days": Case("PUT", "/billing/cycle", {"kind": "days", "timezone": "Asia/Tokyo"},
                              "length_days", 10, "/billing/cycle"),
    "allowance priority": Case("POST", "/billing/allowances", {"name": "monthly", "credits": "5"},
                               "priority", 7, "/billing/allowances"),
    "alert rule hysteresis_percent": Case(
        "POST", "/alert-rules", {"kind": "available_below", "params": {"credits": "5"}},
        "hysteresis_percent", 20, "/alert-rules"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_lax_integers_are_refused_naming_the_field(api: Server, case: Case) -> None:
    org = api.new_org("strict", credits=None)
    base = f"/api/v1/orgs/{org}"
    with api.admin() as admin:
        before = admin.get(base + case.state)
        assert before.status_code == 200, before.text
        for value in LAX_INTEGERS:
            answer = admin.request(case.method, base + case.path, json={**case.body, case.field: value})
            assert answer.status_code == 422, (value, answer.text)
            error = answer.json()["error"]
            assert (error["param"], error["code"], error["type"]) == (
                case.field, "invalid_input", "invalid_request_error"), (value, error)
            assert admin.get(base + case.state).json() == before.json(), value
        assert admin.get(f"{base}/balance").json()["available"] == "0"
        # The same body with a JSON integer is accepted: the field's type was the only fault.
        accepted = admin.request(case.method, base + case.path, json={**case.body, case.field: case.valid})
        assert accepted.status_code in (200, 201), accepted.text
        assert admin.get(base + case.state).json() != before.json()


def test_a_lax_boolean_is_refused_naming_the_field(api: Server) -> None:
    org = api.new_org("strict", credits=None)
    topup = f"/api/v1/orgs/{org}/billing/topup"
    settings = {"threshold": "5", "credits": "100", "price": "10"}
    with api.admin() as admin:
        for value in ("true", 1, "yes"):
            answer = admin.put(topup, json={**settings, "enabled": value})
            assert answer.status_code == 422, (value, answer.text)
            assert answer.json()["error"]["param"] == "enabled"
        accepted = admin.put(topup, json={**settings, "enabled": False})
        assert accepted.status_code == 200, accepted.text
