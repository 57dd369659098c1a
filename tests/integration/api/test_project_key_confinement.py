"""A project-scoped ``manage`` key acts within its project only (docs/api.md): it sees and
revokes only its project's keys (another key's id under its own org path is a 404, as another
organization's ids are) and sets budgets only for its project and that project's keys (403,
as for creating a key outside it)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.e2e.api import conftest as e2e_api
from tests.e2e.api.conftest import Server

# The real-server fixture of tests/e2e/api, bound (not imported) so that the tests' parameters
# of the same name are not redefinitions to ruff.
server = e2e_api.server
API = "/api/v1"
ALL_SCOPES = ["inference", "manage", "read"]


@dataclass
class Org:
    id: str
    p1: str
    p2: str
    ops_id: str  # org-wide manage key
    ops: str
    mine_id: str  # manage key confined to p1: the caller under test
    mine: str
    sibling_id: str  # another key of p1
    other_id: str  # a key of p2


def _org(server: Server) -> Org:
    org_id = server.new_org("acme", credits="100")
    with server.admin() as admin:
        def key(name: str, project_id: str | None) -> tuple[str, str]:
            answer = admin.post(f"{API}/orgs/{org_id}/keys", json={
                "name": name, "scopes": ALL_SCOPES, "project_id": project_id})
            assert answer.status_code == 201, answer.text
            return answer.json()["id"], answer.json()["key"]

        p1 = admin.post(f"{API}/orgs/{org_id}/projects", json={"name": "p1"}).json()["id"]
        p2 = admin.post(f"{API}/orgs/{org_id}/projects", json={"name": "p2"}).json()["id"]
        ops_id, ops = key("ops", None)
        mine_id, mine = key("mine", p1)
        sibling_id, _ = key("sibling", p1)
        other_id, _ = key("other", p2)
    return Org(org_id, p1, p2, ops_id, ops, mine_id, mine, sibling_id, other_id)


def test_a_project_key_lists_and_reads_only_its_projects_keys(server: Server) -> None:
    org = _org(server)
    keys = f"{API}/orgs/{org.id}/keys"
    with server.client(org.mine) as mine:
        listed = mine.get(keys)
        assert listed.status_code == 200, listed.text
        assert {key["id"] for key in listed.json()["data"]} == {org.mine_id, org.sibling_id}
        assert mine.get(f"{keys}/{org.sibling_id}").status_code == 200
        assert mine.get(f"{keys}/{org.mine_id}").status_code == 200
        for outside in (org.ops_id, org.other_id):
            answer = mine.get(f"{keys}/{outside}")
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["param"] == "key_id"
    with server.client(org.ops) as ops:  # an org-wide key still sees them all
        assert len(ops.get(keys).json()["data"]) == 4


def test_a_project_key_cannot_revoke_keys_outside_its_project(server: Server) -> None:
    org = _org(server)
    keys = f"{API}/orgs/{org.id}/keys"
    with server.client(org.mine) as mine:
        for outside in (org.ops_id, org.other_id):
            answer = mine.delete(f"{keys}/{outside}")
            assert answer.status_code == 404, answer.text
        revoked = mine.delete(f"{keys}/{org.sibling_id}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
    with server.client(org.ops) as ops:
        assert ops.get(f"{API}/orgs/{org.id}").status_code == 200  # not revoked
        found = {key["id"]: key["revoked_at"] for key in ops.get(keys).json()["data"]}
    assert found[org.ops_id] is None and found[org.other_id] is None


def test_a_project_key_sets_budgets_only_for_the_other_keys_of_its_project(server: Server) -> None:
    org = _org(server)
    budgets = f"{API}/orgs/{org.id}/budgets"
    with server.client(org.mine) as mine:
        # Not another project's, nor an org-wide key's; nor its own project's cap or its own,
        # which would let a team lift the budget it was given.
        for subject in (f"project:{org.p2}", f"key:{org.other_id}", f"key:{org.ops_id}",
                        "key:key_missing", f"project:{org.p1}", f"key:{org.mine_id}"):
            answer = mine.put(budgets, json={"subject": subject, "cap": "0", "mode": "hard"})
            assert answer.status_code == 403, (subject, answer.text)
            assert answer.json()["error"]["param"] == "subject"
        answer = mine.put(budgets, json={"subject": f"key:{org.sibling_id}", "cap": "5", "mode": "hard"})
        assert answer.status_code == 200, answer.text
    with server.client(org.ops) as ops:
        subjects = {budget["subject"] for budget in ops.get(budgets).json()["data"]}
        assert subjects == {f"key:{org.sibling_id}"}
        # An org-wide manage key is not confined.
        answer = ops.put(budgets, json={"subject": f"project:{org.p2}", "cap": "0"})
        assert answer.status_code == 200, answer.text


def test_a_project_key_sees_only_its_projects_budgets_and_project_and_creates_none(server: Server) -> None:
    org = _org(server)
    budgets, projects = f"{API}/orgs/{org.id}/budgets", f"{API}/orgs/{org.id}/projects"
    with server.client(org.ops) as ops:
        for subject in (f"project:{org.p1}", f"project:{org.p2}", f"key:{org.sibling_id}",
                        f"key:{org.other_id}", f"key:{org.ops_id}"):
            assert ops.put(budgets, json={"subject": subject, "cap": "5"}).status_code == 200
    with server.client(org.mine) as mine:
        seen = {budget["subject"] for budget in mine.get(budgets).json()["data"]}
        assert seen == {f"project:{org.p1}", f"key:{org.sibling_id}"}
        assert [project["id"] for project in mine.get(projects).json()["data"]] == [org.p1]
        assert mine.get(f"{projects}/{org.p1}").status_code == 200
        assert mine.get(f"{projects}/{org.p2}").status_code == 404
        refused = mine.post(projects, json={"name": "p3"})
        assert refused.status_code == 403, refused.text
    with server.client(org.ops) as ops:
        assert len(ops.get(projects).json()["data"]) == 2  # nothing was created
