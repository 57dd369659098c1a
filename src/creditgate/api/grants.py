"""Grants: admins create and void them; an org key with ``read`` lists its own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request, Response

from creditgate.api.auth import Caller, require_admin, require_org
from creditgate.api.common import blocking, credits_in, grant_dict, services_of, time_in
from creditgate.api.idempotency import fingerprint, idempotent, ledger_key
from creditgate.api.schemas import GrantCreate, OrgId, ResourceId

router = APIRouter(tags=["grants"])
IdempotencyKey = Header(None, alias="Idempotency-Key", max_length=150)


@router.post("/orgs/{org_id}/grants", status_code=201)
async def create_grant(org_id: OrgId, body: GrantCreate, principal: Caller, request: Request,
                       idempotency_key: str | None = IdempotencyKey) -> Response:
    require_admin(principal)
    services = services_of(request)
    credits = credits_in(body.credits, "credits")
    cost_basis = credits_in(body.cost_basis, "cost_basis", allow_zero=True) if body.cost_basis else 0

    async def produce() -> tuple[int, Any]:
        result = await blocking(
            services.ledger.grant, org_id, credits, kind=body.kind, scope=body.scope,
            priority=body.priority, effective_at_us=time_in(body.effective_at, "effective_at"),
            expires_at_us=time_in(body.expires_at, "expires_at"), cost_basis=cost_basis,
            currency=body.currency, allow=body.allow, metadata=body.metadata,
            idempotency_key=ledger_key(idempotency_key, "grant"))
        grant = await blocking(services.ledger.get_grant, org_id, result["grant_id"])
        return 201, grant_dict(grant)

    print_ = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await idempotent(services, principal, idempotency_key, print_, produce)


@router.get("/orgs/{org_id}/grants")
async def list_grants(org_id: OrgId, principal: Caller, request: Request,
                      include_closed: bool = True) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    found = await blocking(services_of(request).ledger.list_grants, org_id, include_closed=include_closed)
    return {"data": [grant_dict(grant) for grant in found]}


@router.get("/orgs/{org_id}/grants/{grant_id}")
async def get_grant(org_id: OrgId, grant_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return grant_dict(await blocking(services_of(request).ledger.get_grant, org_id, grant_id))


@router.post("/orgs/{org_id}/grants/{grant_id}/void")
async def void_grant(org_id: OrgId, grant_id: ResourceId, principal: Caller, request: Request,
                     idempotency_key: str | None = IdempotencyKey) -> Response:
    require_admin(principal)
    services = services_of(request)

    async def produce() -> tuple[int, Any]:
        await blocking(services.ledger.get_grant, org_id, grant_id)
        await blocking(services.ledger.void_grant, org_id, grant_id,
                       idempotency_key=ledger_key(idempotency_key, "grant_void"))
        return 200, grant_dict(await blocking(services.ledger.get_grant, org_id, grant_id))

    return await idempotent(services, principal, idempotency_key,
                            fingerprint("POST", request.url.path, {}), produce)
