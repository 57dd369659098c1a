"""Budgets of a key and of its project bind what that key spends through the REST API: holds
(reserve, post, void) and usage events, as they bind the gateway (docs/ledger.md: a hard budget
refuses a reservation or debit)."""

from __future__ import annotations

from typing import Any

import pytest

from creditgate.clock import iso
from tests.e2e.api import conftest as e2e_api
from tests.e2e.api.conftest import Server

# The real-server fixture of tests/e2e/api, bound (not imported) so that the tests' parameters
# of the same name are not redefinitions to ruff.
server = e2e_api.server
API = "/api/v1"


def _project_key(server: Server, org_id: str) -> tuple[str, str, str]:
    """A project and an inference+read key confined to it: (project id, key id, secret)."""
    with server.admin() as admin:
        project_id = admin.post(f"{API}/orgs/{org_id}/projects", json={"name": "p1"}).json()["id"]
        created = admin.post(f"{API}/orgs/{org_id}/keys", json={
            "name": "capped", "scopes": ["inference", "read"], "project_id": project_id}).json()
    return project_id, created["id"], created["key"]


def _set_budget(server: Server, org_id: str, subject: str, cap: str, mode: str = "hard") -> None:
    with server.admin() as admin:
        answer = admin.put(f"{API}/orgs/{org_id}/budgets",
                           json={"subject": subject, "cap": cap, "mode": mode})
        assert answer.status_code == 200, answer.text


def _budgets(server: Server, org_id: str) -> dict[str, tuple[str, str]]:
    """subject -> (spent, held)."""
    with server.admin() as admin:
        found = admin.get(f"{API}/orgs/{org_id}/budgets").json()["data"]
    return {budget["subject"]: (budget["spent"], budget["held"]) for budget in found}


def _available(server: Server, org_id: str) -> str:
    with server.admin() as admin:
        available: str = admin.get(f"{API}/orgs/{org_id}/balance").json()["available"]
    return available


@pytest.mark.parametrize("kind", ["key", "project"])
def test_a_hard_budget_of_the_key_or_its_project_refuses_a_rest_hold(server: Server, kind: str) -> None:
    org_id = server.new_org("acme", credits="1000")
    project_id, key_id, secret = _project_key(server, org_id)
    subject = f"key:{key_id}" if kind == "key" else f"project:{project_id}"
    _set_budget(server, org_id, subject, "1")
    with server.client(secret) as client:
        answer = client.post(f"{API}/orgs/{org_id}/holds", json={"credits": "500"})
    assert answer.status_code == 402, answer.text
    error = answer.json()["error"]
    assert error["code"] == "insufficient_credits"
    assert error["limit_source"] == f"budget:{subject}"
    assert _available(server, org_id) == "1000"
    assert _budgets(server, org_id) == {subject: ("0", "0")}


def test_posting_a_hold_spends_the_budgets_and_voiding_releases_them(server: Server) -> None:
    org_id = server.new_org("acme", credits="1000")
    project_id, key_id, secret = _project_key(server, org_id)
    key_subject, project_subject = f"key:{key_id}", f"project:{project_id}"
    _set_budget(server, org_id, key_subject, "10")
    _set_budget(server, org_id, project_subject, "100", mode="soft")
    holds = f"{API}/orgs/{org_id}/holds"
    with server.client(secret) as client:
        first = client.post(holds, json={"credits": "6"})
        assert first.status_code == 201, first.text
        assert _budgets(server, org_id) == {key_subject: ("0", "6"), project_subject: ("0", "6")}
        # Only 4 of the key's 10 are left while 6 are held.
        assert client.post(holds, json={"credits": "5"}).status_code == 402
        posted = client.post(f"{holds}/{first.json()['id']}/post", json={"credits": "4"})
        assert posted.status_code == 200, posted.text
        assert _budgets(server, org_id) == {key_subject: ("4", "0"), project_subject: ("4", "0")}
        second = client.post(holds, json={"credits": "6"})
        assert second.status_code == 201, second.text
        voided = client.post(f"{holds}/{second.json()['id']}/void")
        assert voided.status_code == 200, voided.text
        assert _budgets(server, org_id) == {key_subject: ("4", "0"), project_subject: ("4", "0")}
        refused = client.post(holds, json={"credits": "6.5"})
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["limit_source"] == f"budget:{key_subject}"
    assert _available(server, org_id) == "996"


def test_an_admins_hold_is_not_counted_against_any_keys_budget(server: Server) -> None:
    org_id = server.new_org("acme", credits="1000")
    _, key_id, _ = _project_key(server, org_id)
    _set_budget(server, org_id, f"key:{key_id}", "1")
    with server.admin() as admin:
        assert admin.post(f"{API}/orgs/{org_id}/holds", json={"credits": "500"}).status_code == 201
    assert _budgets(server, org_id) == {f"key:{key_id}": ("0", "0")}


def _event(org_id: str, event_id: str, tokens: int, at: str) -> dict[str, Any]:
    """``tokens`` input tokens of gpt-test: 2 credits per million."""
    return {"specversion": "1.0", "type": "creditgate.usage", "id": event_id, "source": "budgets",
            "subject": org_id, "time": at,
            "data": {"model": "gpt-test", "meters": {"input_tokens": tokens}}}


def test_usage_events_count_against_and_are_refused_by_the_senders_budgets(server: Server) -> None:
    org_id = server.new_org("acme", credits="1000")
    project_id, key_id, secret = _project_key(server, org_id)
    key_subject, project_subject = f"key:{key_id}", f"project:{project_id}"
    _set_budget(server, org_id, key_subject, "1")
    _set_budget(server, org_id, project_subject, "100", mode="soft")
    now = iso(server.clock.now_us())
    with server.client(secret) as client:
        # 0.4 credits each: the first two fit the key's hard budget of 1, the third does not.
        answer = client.post(f"{API}/events", json=[_event(org_id, str(n), 200_000, now)
                                                    for n in range(3)])
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [result["status"] for result in results] == ["accepted", "accepted", "rejected"]
        assert results[2]["reason"] == "insufficient_credits"
        assert key_subject in results[2]["message"]
        assert _budgets(server, org_id) == {key_subject: ("0.8", "0"), project_subject: ("0.8", "0")}
        assert _available(server, org_id) == "999.2"
        # The refused event was not claimed: it is accepted once the budget has room.
        _set_budget(server, org_id, key_subject, "2")
        again = client.post(f"{API}/events", json=[_event(org_id, "2", 200_000, now)])
        assert again.json()["results"][0]["status"] == "accepted", again.text
    assert _budgets(server, org_id)[key_subject] == ("1.2", "0")


def test_a_hard_project_budget_refuses_usage_events_of_its_keys(server: Server) -> None:
    org_id = server.new_org("acme", credits="1000")
    project_id, _, secret = _project_key(server, org_id)
    _set_budget(server, org_id, f"project:{project_id}", "1")
    now = iso(server.clock.now_us())
    with server.client(secret) as client:
        answer = client.post(f"{API}/events", json=[_event(org_id, "big", 1_000_000, now)])
    [result] = answer.json()["results"]
    assert (result["status"], result["reason"]) == ("rejected", "insufficient_credits"), result
    assert _available(server, org_id) == "1000"
