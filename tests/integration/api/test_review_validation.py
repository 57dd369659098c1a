"""Bad input the REST API must refuse with a 4xx naming the field, before anything is written
(found in review): a reused payment reference, JSON orjson cannot store, malformed JSON, lax
hold TTLs, unknown alert-rule params, an empty cycle timezone, control characters in text, and
a past expiry. Against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from creditgate.clock import ManualClock
from creditgate.errors import InvalidInput
from tests.e2e.api.conftest import Server, serve_api


@pytest.fixture
def api(database_url: str, clock: ManualClock) -> Iterator[Server]:
    yield from serve_api(database_url, clock)


def _refused(answer: httpx.Response, status: int, param: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["param"] == param, error
    return error


def test_a_payment_reference_reused_with_another_quantity_is_a_conflict(api: Server) -> None:
    org = api.new_org("buyer", credits=None)
    with api.admin() as admin:
        bundle = admin.post("/api/v1/bundles", json={"name": "small", "price": "10", "credits": "100"})
        assert bundle.status_code == 201, bundle.text
        purchases = f"/api/v1/orgs/{org}/purchases"
        first = admin.post(purchases, json={"bundle_id": bundle.json()["id"], "payment_reference": "pay1"})
        assert first.status_code == 201, first.text
        again = admin.post(purchases, json={"bundle_id": bundle.json()["id"], "payment_reference": "pay1",
                                            "quantity": 5})
        error = _refused(again, 409, "payment_reference")
        assert (error["type"], error["code"]) == ("conflict_error", "idempotency_conflict")
        same = admin.post(purchases, json={"bundle_id": bundle.json()["id"], "payment_reference": "pay1",
                                           "quantity": 1})
        assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
        assert admin.get(f"/api/v1/orgs/{org}/balance").json()["available"] == "100"
        assert len(admin.get(purchases).json()["data"]) == 1


@pytest.mark.parametrize("value", [10**30, -(10**30)])
def test_metadata_orjson_cannot_store_is_refused_naming_metadata(api: Server, value: int) -> None:
    org = api.new_org("meta")
    with api.admin() as admin:
        body = {"credits": "1", "metadata": {"a": value}}
        _refused(admin.post(f"/api/v1/orgs/{org}/grants", json=body), 422, "metadata")
        _refused(admin.post(f"/api/v1/orgs/{org}/grants", json=body, headers={"Idempotency-Key": "m1"}),
                 422, "metadata")
        _refused(admin.post(f"/api/v1/orgs/{org}/holds", json=body), 422, "metadata")
        assert len(admin.get(f"/api/v1/orgs/{org}/grants").json()["data"]) == 1  # new_org's own
        assert admin.get(f"/api/v1/orgs/{org}/holds").json()["data"] == []
        # The key was not spent on the refused request.
        ok = admin.post(f"/api/v1/orgs/{org}/grants", json={"credits": "1", "metadata": {"a": 1}},
                        headers={"Idempotency-Key": "m1"})
        assert ok.status_code == 201, ok.text


def test_malformed_json_names_the_body(api: Server) -> None:
    with api.admin() as admin:
        answer = admin.post("/api/v1/orgs", content=b'{"name": ', headers={"content-type": "application/json"})
    error = _refused(answer, 422, "body")
    assert error["message"].startswith("the request body is not valid JSON")
    assert error["code"] == "invalid_input"


@pytest.mark.parametrize("ttl", ["10", 10.0, True])
def test_hold_ttl_must_be_a_json_integer(api: Server, ttl: Any) -> None:
    org = api.new_org("holder")
    with api.admin() as admin:
        _refused(admin.post(f"/api/v1/orgs/{org}/holds", json={"credits": "1", "ttl_s": ttl}), 422, "ttl_s")
        assert admin.get(f"/api/v1/orgs/{org}/holds").json()["data"] == []
        assert admin.post(f"/api/v1/orgs/{org}/holds", json={"credits": "1", "ttl_s": 10}).status_code == 201


def test_unknown_alert_rule_params_are_refused_naming_the_key(api: Server) -> None:
    org = api.new_org("alerts")
    rules = f"/api/v1/orgs/{org}/alert-rules"
    with api.admin() as admin:
        error = _refused(admin.post(rules, json={"kind": "available_below",
                                                 "params": {"credits": "5", "credit": "50"}}),
                         422, "params.credit")
        assert "available_below" in error["message"]
        _refused(admin.post(rules, json={"kind": "depletion_within", "params": {"days": 3, "factor": "2"}}),
                 422, "params.factor")
        assert admin.get(rules).json()["data"] == []
        assert admin.post(rules, json={"kind": "expiring_waste",
                                       "params": {"days": 3, "credits": "1"}}).status_code == 201


def test_an_empty_cycle_timezone_is_refused(api: Server) -> None:
    org = api.new_org("cycle")
    with api.admin() as admin:
        before = admin.get(f"/api/v1/orgs/{org}/billing/cycle").json()
        _refused(admin.put(f"/api/v1/orgs/{org}/billing/cycle", json={"kind": "days", "timezone": ""}),
                 422, "timezone")
        after = admin.get(f"/api/v1/orgs/{org}/billing/cycle").json()
        assert (after["kind"], after["timezone"]) == (before["kind"], before["timezone"])
    billing = api.services.extras["billing"]
    with pytest.raises(InvalidInput) as raised:
        billing.set_cycle(org, kind="days", timezone="")
    assert raised.value.param == "timezone"


def test_a_past_expiry_says_what_it_was_compared_with(api: Server) -> None:
    org = api.new_org("expiry")
    api.clock.advance(days=1)
    grants = f"/api/v1/orgs/{org}/grants"
    with api.admin() as admin:
        past = _refused(admin.post(grants, json={"credits": "1", "expires_at": "2026-01-01T00:00:00Z"}),
                        422, "expires_at")
        assert "future" in past["message"] and "effective_at" not in past["message"]
        both = _refused(admin.post(grants, json={"credits": "1", "effective_at": "2026-01-03T00:00:00Z",
                                                 "expires_at": "2026-01-02T00:00:00Z"}), 422, "expires_at")
        assert "after effective_at" in both["message"]


def test_control_characters_in_webhook_and_training_text_are_refused(api: Server) -> None:
    org = api.new_org("text", credits=None)
    with api.admin() as admin:
        admin.post(f"/api/v1/orgs/{org}/grants", json={"credits": "100", "scope": "training"})
        hooks = f"/api/v1/orgs/{org}/webhooks"
        _refused(admin.post(hooks, json={"url": "http://example.com/h\u0007"}), 422, "url")
        _refused(admin.post(hooks, json={"url": "http://example.com/h", "description": "a\nb"}),
                 422, "description")
        assert admin.get(hooks).json()["data"] == []
        jobs = f"/api/v1/orgs/{org}/training-jobs"
        _refused(admin.post(jobs, json={"model": "m", "dataset_ref": "d\u001fs", "credits_per_gpu_hour": "1"}),
                 422, "dataset_ref")
        assert admin.get(jobs).json()["data"] == []


@pytest.fixture
def pg_api(postgres_url: str, clock: ManualClock) -> Iterator[Server]:
    yield from serve_api(postgres_url, clock, sample_pricing=False)


@pytest.mark.postgres
def test_nul_in_text_is_refused_on_postgres_before_anything_is_written(pg_api: Server) -> None:
    org = pg_api.new_org("nul", credits=None)
    with pg_api.admin() as admin:
        admin.post(f"/api/v1/orgs/{org}/grants", json={"credits": "100"})
        jobs = f"/api/v1/orgs/{org}/training-jobs"
        _refused(admin.post(jobs, json={"model": "m", "dataset_ref": "ds\u0000x", "credits_per_gpu_hour": "1"}),
                 422, "dataset_ref")
        _refused(admin.post(jobs, json={"model": "m", "dataset_ref": "ds", "credits_per_gpu_hour": "1",
                                        "project_id": "p\u0000"}), 422, "project_id")
        assert admin.get(jobs).json()["data"] == []
        hooks = f"/api/v1/orgs/{org}/webhooks"
        _refused(admin.post(hooks, json={"url": "http://example.com/h", "description": "a\u0000b"}),
                 422, "description")
        _refused(admin.post(hooks, json={"url": "http://example.com/h\u0000"}), 422, "url")
        assert admin.get(hooks).json()["data"] == []
        topup = admin.put(f"/api/v1/orgs/{org}/billing/topup",
                          json={"threshold": "1000", "credits": "10", "price": "1"})
        assert topup.status_code == 200, topup.text
        invoice = admin.post(f"/api/v1/orgs/{org}/billing/topup/check").json()["invoice"]
        assert invoice is not None and invoice["status"] == "open"
        confirm = f"/api/v1/orgs/{org}/invoices/{invoice['id']}/confirm"
        _refused(admin.post(confirm, json={"provider_ref": "x\u0000"}), 422, "provider_ref")
        assert admin.get(f"/api/v1/orgs/{org}/balance").json()["available"] == "100"
        assert admin.get(f"/api/v1/orgs/{org}/invoices").json()["data"][0]["status"] == "open"
        paid = admin.post(confirm, json={"provider_ref": "pay_1"})
        assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
        assert admin.get(f"/api/v1/orgs/{org}/balance").json()["available"] == "110"
