"""Billing over REST: cycles, closing, statements (list, get as JSON/CSV/HTML, verify, the public
key), recurring allowances, trial configuration, auto top-up rules, invoices and payment
confirmation, training jobs. Each route parses, calls one billing use case, and lets the error
tree map failures; bad input is refused before anything is written."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from creditgate.api.auth import Caller, require_admin, require_org
from creditgate.api.common import blocking, credits_in, services_of, time_in
from creditgate.api.schemas import Amount, Name, OrgId, ResourceId, Strict, Timestamp
from creditgate.billing.render import to_csv, to_html
from creditgate.billing.service import Billing
from creditgate.billing.signing import verify_document
from creditgate.text import ID_PATTERN, TEXT_PATTERN

router = APIRouter(tags=["billing"])
Rollover = Annotated[dict[str, Any], Field(max_length=8)]
ModelNames = Annotated[list[Name], Field(min_length=1, max_length=100)]


def billing_of(request: Request) -> Billing:
    return services_of(request).extras["billing"]  # type: ignore[no-any-return]


class CycleSet(Strict):
    kind: Literal["monthly", "days"] = "monthly"
    timezone: Annotated[str, Field(min_length=1, max_length=64, pattern=TEXT_PATTERN)] | None = None
    anchor_day: Annotated[int, Field(ge=1, le=31, strict=True)] = 1
    length_days: Annotated[int, Field(ge=1, le=366, strict=True)] = 30
    late_grace_s: Annotated[int, Field(ge=0, strict=True)] | None = None
    late_after_grace: Literal["book_current", "reject"] | None = None


class CloseRequest(Strict):
    period_start: Timestamp | None = None


class AllowanceCreate(Strict):
    name: Name
    credits: Amount
    scope: Literal["inference", "training", "any"] = "any"
    allow: ModelNames | None = None
    priority: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] = 100
    expires_after_periods: Annotated[int, Field(ge=1, le=12, strict=True)] | None = 1
    rollover: Rollover | None = None


class TrialSet(Strict):
    credits: Amount
    days: Annotated[int, Field(ge=1, le=90, strict=True)] = 14
    scope: Literal["inference", "training", "any"] = "inference"
    allow: ModelNames | None = None


class TopUpSet(Strict):
    threshold: Amount
    credits: Amount
    price: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    cooldown_s: Annotated[int, Field(ge=0, strict=True)] = 3600
    max_per_period: Annotated[int, Field(ge=1, strict=True)] = 3
    enabled: Annotated[bool, Field(strict=True)] = True  # "true", 1 or "yes" are refused, not read


class PaymentConfirm(Strict):
    provider_ref: Annotated[str, Field(max_length=200, pattern=TEXT_PATTERN)] | None = None


class TrainingJobCreate(Strict):
    model: Name
    dataset_ref: Annotated[str, Field(min_length=1, max_length=500, pattern=TEXT_PATTERN)]
    credits_per_gpu_hour: Amount
    project_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None


class TrainingReport(Strict):
    gpu_hours: Amount  # cumulative


# ----------------------------------------------------------------------------- cycles and closing
@router.get("/orgs/{org_id}/billing/cycle")
async def get_cycle(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    billing = billing_of(request)
    cycle = await blocking(billing.cycle, org_id)
    return {**cycle.to_dict(), "periods": await blocking(billing.periods, org_id, count_max=12)}


@router.put("/orgs/{org_id}/billing/cycle")
async def set_cycle(org_id: OrgId, body: CycleSet, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    cycle = await blocking(billing_of(request).set_cycle, org_id, **body.model_dump())
    return cycle.to_dict()


@router.post("/orgs/{org_id}/billing/close")
async def close_org(org_id: OrgId, body: CloseRequest, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    outcomes = await blocking(billing_of(request).close_org, org_id,
                              through_start_us=time_in(body.period_start, "period_start"))
    return {"closed": [outcome.to_dict() for outcome in outcomes]}


@router.post("/billing/close")
async def close_due(principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    return (await blocking(billing_of(request).close_due)).to_dict()


# ----------------------------------------------------------------------------- statements
@router.get("/billing/public-keys")
async def public_keys(request: Request) -> dict[str, Any]:
    """The Ed25519 public keys statements are signed with (no key needed: they are public)."""
    return {"data": await blocking(billing_of(request).public_keys)}


@router.get("/orgs/{org_id}/statements")
async def list_statements(org_id: OrgId, principal: Caller, request: Request,
                          limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(billing_of(request).list_statements, org_id, limit=limit)}


@router.get("/orgs/{org_id}/statements/{statement_id}")
async def get_statement(org_id: OrgId, statement_id: ResourceId, principal: Caller, request: Request,
                        format: Literal["json", "csv", "html"] = "json") -> Any:
    require_org(principal, org_id, "read")
    document = await blocking(billing_of(request).statement, org_id, statement_id)
    if format == "csv":
        return Response(to_csv(document), media_type="text/csv; charset=utf-8")
    if format == "html":
        return Response(to_html(document), media_type="text/html; charset=utf-8")
    return document


@router.post("/statements/verify")
async def verify_statement(document: dict[str, Any], request: Request) -> dict[str, Any]:
    """Check a signed statement: signature, signed by one of this server's keys, figures add up."""
    keys = tuple(item["public_key"] for item in await blocking(billing_of(request).public_keys))
    result = verify_document(document, trusted_public_keys=keys)
    return {"valid": result.ok, "reason": result.reason, "key_id": result.key_id}


# ----------------------------------------------------------------------------- allowances and trials
@router.get("/orgs/{org_id}/billing/allowances")
async def list_allowances(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    found = await blocking(billing_of(request).allowances.list, org_id)
    return {"data": [item.to_dict() for item in found]}


@router.post("/orgs/{org_id}/billing/allowances", status_code=201)
async def create_allowance(org_id: OrgId, body: AllowanceCreate, principal: Caller,
                           request: Request) -> dict[str, Any]:
    require_admin(principal)
    created = await blocking(
        billing_of(request).allowances.create, org_id, body.name, credits_in(body.credits, "credits"),
        scope=body.scope, allow=body.allow, priority=body.priority,
        expires_after_periods=body.expires_after_periods, rollover=body.rollover)
    return created.to_dict()


@router.post("/orgs/{org_id}/billing/allowances/{allowance_id}/disable")
async def disable_allowance(org_id: OrgId, allowance_id: ResourceId, principal: Caller,
                            request: Request) -> dict[str, Any]:
    require_admin(principal)
    return (await blocking(billing_of(request).allowances.set_active, org_id, allowance_id, False)).to_dict()


@router.get("/billing/trial")
async def get_trial(principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    return {"trial": await blocking(billing_of(request).trials.config)}


@router.put("/billing/trial")
async def set_trial(body: TrialSet, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    return await blocking(billing_of(request).trials.configure, credits_in(body.credits, "credits", allow_zero=True),
                          body.days, scope=body.scope, allow=body.allow)


@router.post("/orgs/{org_id}/billing/trial", status_code=201)
async def grant_trial(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    return {"grant_id": await blocking(billing_of(request).trials.grant, org_id)}


# ----------------------------------------------------------------------------- top-ups and invoices
@router.get("/orgs/{org_id}/billing/topup")
async def get_topup(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return await blocking(billing_of(request).topups.get_rule, org_id)


@router.put("/orgs/{org_id}/billing/topup")
async def set_topup(org_id: OrgId, body: TopUpSet, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return await blocking(
        billing_of(request).topups.set_rule, org_id, threshold=credits_in(body.threshold, "threshold", allow_zero=True),
        credits=credits_in(body.credits, "credits"), price=credits_in(body.price, "price", allow_zero=True),
        currency=body.currency, cooldown_s=body.cooldown_s, max_per_period=body.max_per_period,
        enabled=body.enabled)


@router.post("/orgs/{org_id}/billing/topup/check")
async def check_topup(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return {"invoice": await blocking(billing_of(request).topups.check, org_id)}


@router.get("/orgs/{org_id}/invoices")
async def list_invoices(org_id: OrgId, principal: Caller, request: Request,
                        status: str | None = Query(None, pattern=r"^(open|paid|void)$")) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(billing_of(request).topups.list_invoices, org_id, status=status)}


@router.post("/orgs/{org_id}/invoices/{invoice_id}/confirm")
async def confirm_payment(org_id: OrgId, invoice_id: ResourceId, body: PaymentConfirm, principal: Caller,
                          request: Request) -> dict[str, Any]:
    """Payment confirmation (admin: the payment provider's webhook or an operator)."""
    require_admin(principal)
    return await blocking(billing_of(request).topups.confirm_payment, org_id, invoice_id,
                          provider_ref=body.provider_ref)


# ----------------------------------------------------------------------------- training jobs
@router.post("/orgs/{org_id}/training-jobs", status_code=201)
async def start_training(org_id: OrgId, body: TrainingJobCreate, principal: Caller,
                         request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "inference")
    return await blocking(billing_of(request).training.start, org_id, model=body.model,
                          dataset_ref=body.dataset_ref, project_id=body.project_id,
                          credits_per_gpu_hour=credits_in(body.credits_per_gpu_hour, "credits_per_gpu_hour"))


@router.get("/orgs/{org_id}/training-jobs")
async def list_training(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(billing_of(request).training.list, org_id)}


@router.post("/orgs/{org_id}/training-jobs/{job_id}/report")
async def report_training(org_id: OrgId, job_id: ResourceId, body: TrainingReport, principal: Caller,
                          request: Request) -> dict[str, Any]:
    """Report cumulative GPU-hours; ``stop: true`` tells the job it is out of training credits."""
    require_org(principal, org_id, "inference")
    return await blocking(billing_of(request).training.report, org_id, job_id,
                          credits_in(body.gpu_hours, "gpu_hours", allow_zero=True))


@router.post("/orgs/{org_id}/training-jobs/{job_id}/complete")
async def complete_training(org_id: OrgId, job_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "inference")
    return await blocking(billing_of(request).training.complete, org_id, job_id)
