"""Two-phase holds for integrations that meter themselves: create (pending), post, void."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, credits_in, hold_dict, services_of
from creditgate.api.idempotency import fingerprint, idempotent, ledger_key
from creditgate.api.limits import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from creditgate.api.schemas import HoldCreate, HoldPost, OrgId, ResourceId

router = APIRouter(tags=["holds"])
IdempotencyKey = Header(None, alias="Idempotency-Key", max_length=150)


@router.post("/orgs/{org_id}/holds", status_code=201)
async def create_hold(org_id: OrgId, body: HoldCreate, principal: Caller, request: Request,
                      idempotency_key: str | None = IdempotencyKey) -> Response:
    require_org(principal, org_id, "inference")
    services = services_of(request)
    operation = services.ledger.reserve_operation(
        org_id, credits_in(body.credits, "credits"), scope=body.scope, ttl_s=body.ttl_s,
        model=body.model, metadata=body.metadata, idempotency_key=ledger_key(idempotency_key, "hold"),
        budget_subjects=principal.budget_subjects)

    async def produce() -> tuple[int, Any]:
        result = await services.ledger.execute_async(operation)
        return 201, hold_dict(await blocking(services.ledger.get_hold, org_id, result["hold_id"]))

    print_ = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await idempotent(services, principal, idempotency_key, print_, produce)


@router.get("/orgs/{org_id}/holds")
async def list_holds(org_id: OrgId, principal: Caller, request: Request,
                     status: str | None = Query(None, pattern=r"^(pending|posted|voided|expired)$"),
                     limit: int = Query(PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX)) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    services = services_of(request)
    await blocking(services.ledger.get_org, org_id)
    found = await blocking(services.ledger.list_holds, org_id, status=status, limit=limit)
    return {"data": [hold_dict(hold) for hold in found]}


@router.get("/orgs/{org_id}/holds/{hold_id}")
async def get_hold(org_id: OrgId, hold_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return hold_dict(await blocking(services_of(request).ledger.get_hold, org_id, hold_id))


@router.post("/orgs/{org_id}/holds/{hold_id}/post")
async def post_hold(org_id: OrgId, hold_id: ResourceId, body: HoldPost, principal: Caller,
                    request: Request, idempotency_key: str | None = IdempotencyKey) -> Response:
    require_org(principal, org_id, "inference")
    services = services_of(request)
    actual = credits_in(body.credits, "credits", allow_zero=True)

    async def produce() -> tuple[int, Any]:
        await blocking(services.ledger.get_hold, org_id, hold_id)  # 404 for another org's hold
        await blocking(services.ledger.post, org_id, hold_id, actual,
                       idempotency_key=ledger_key(idempotency_key, "post"))
        return 200, hold_dict(await blocking(services.ledger.get_hold, org_id, hold_id))

    print_ = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await idempotent(services, principal, idempotency_key, print_, produce)


@router.post("/orgs/{org_id}/holds/{hold_id}/void")
async def void_hold(org_id: OrgId, hold_id: ResourceId, principal: Caller, request: Request,
                    idempotency_key: str | None = IdempotencyKey) -> Response:
    require_org(principal, org_id, "inference")
    services = services_of(request)

    async def produce() -> tuple[int, Any]:
        await blocking(services.ledger.get_hold, org_id, hold_id)
        await blocking(services.ledger.void, org_id, hold_id,
                       idempotency_key=ledger_key(idempotency_key, "void"))
        return 200, hold_dict(await blocking(services.ledger.get_hold, org_id, hold_id))

    return await idempotent(services, principal, idempotency_key,
                            fingerprint("POST", request.url.path, {}), produce)
