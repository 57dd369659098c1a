"""Training reports that cannot be booked leave the job as it was, and a job's project must be
one of its organization's: over HTTP against a real server (SQLite and PostgreSQL), and the
use case itself for a debit that fails after the claim."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock
from creditgate.ledger.credits import UNITS_MAX
from tests.e2e.api.conftest import Server, serve_api
from tests.integration.billing.helpers import credits


@pytest.fixture
def api(database_url: str, clock: ManualClock) -> Iterator[Server]:
    yield from serve_api(database_url, clock, sample_pricing=False)


def test_a_report_costing_more_than_the_credit_maximum_writes_nothing(api: Server) -> None:
    org = api.new_org("trainer", credits=None)
    with api.admin() as admin:
        admin.post(f"/api/v1/orgs/{org}/grants", json={"credits": str(UNITS_MAX), "scope": "training"})
        job = admin.post(f"/api/v1/orgs/{org}/training-jobs",
                         json={"model": "m", "dataset_ref": "ds", "credits_per_gpu_hour": str(UNITS_MAX)})
        assert job.status_code == 201, job.text
        report = f"/api/v1/orgs/{org}/training-jobs/{job.json()['id']}/report"
        for _ in range(2):  # the retry is refused the same way: nothing was claimed
            refused = admin.post(report, json={"gpu_hours": "2"})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["param"] == "gpu_hours"
            (after,) = admin.get(f"/api/v1/orgs/{org}/training-jobs").json()["data"]
            assert (after["gpu_hours"], after["reports"], after["credits_booked"],
                    after["credits_unbooked"]) == ("0", 0, "0", "0")
        booked = admin.post(report, json={"gpu_hours": "1"})
        assert booked.status_code == 200, booked.text
        assert booked.json()["credits_booked"] == str(UNITS_MAX) and booked.json()["stop"] is False
        assert admin.get(f"/api/v1/orgs/{org}/balance").json()["available"] == "0"


def test_a_training_job_names_one_of_its_orgs_projects(api: Server) -> None:
    org = api.new_org("projects", credits=None)
    other = api.new_org("other", credits=None)
    with api.admin() as admin:
        admin.post(f"/api/v1/orgs/{org}/grants", json={"credits": "10", "scope": "training"})
        mine = admin.post(f"/api/v1/orgs/{org}/projects", json={"name": "research"}).json()["id"]
        theirs = admin.post(f"/api/v1/orgs/{other}/projects", json={"name": "research"}).json()["id"]
        jobs = f"/api/v1/orgs/{org}/training-jobs"
        body: dict[str, Any] = {"model": "m", "dataset_ref": "ds", "credits_per_gpu_hour": "1"}
        for project_id in ("prj_nope", theirs):
            refused = admin.post(jobs, json={**body, "project_id": project_id})
            assert 400 <= refused.status_code < 500, refused.text
            assert refused.json()["error"]["param"] == "project_id"
        assert admin.get(jobs).json()["data"] == []
        started = admin.post(jobs, json={**body, "project_id": mine})
        assert started.status_code == 201 and started.json()["project_id"] == mine


def test_a_debit_failing_after_the_claim_gives_the_hours_back(sqlite_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    services = bootstrap(sqlite_url, clock=ManualClock())
    try:
        training = services.extras["billing"].training
        org = services.ledger.create_org("flaky")
        services.ledger.grant(org.id, credits("100"), scope="training")
        job = training.start(org.id, model="m", dataset_ref="ds", credits_per_gpu_hour=credits("10"))
        debit = services.ledger.debit

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the database went away")

        monkeypatch.setattr(services.ledger, "debit", unavailable)
        with pytest.raises(ConnectionError):
            training.report(org.id, job["id"], credits("2"))
        after = training.get(org.id, job["id"])
        assert (after["gpu_hours"], after["reports"], after["credits_booked"]) == ("0", 0, "0")
        monkeypatch.setattr(services.ledger, "debit", debit)
        retried = training.report(org.id, job["id"], credits("2"))
        assert (retried["gpu_hours"], retried["reports"], retried["credits_booked"]) == ("2", 1, "20")
        assert services.ledger.balance(org.id, scope="training").available == credits("80")
    finally:
        services.close()
