"""The bundle catalog (admins write, every key reads) and purchases (``manage``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Request, Response

from creditgate.api import catalog
from creditgate.api.auth import Caller, require_admin, require_org
from creditgate.api.common import blocking, services_of
from creditgate.api.idempotency import fingerprint, idempotent
from creditgate.api.schemas import BundleBody, OrgId, PurchaseCreate, ResourceId

router = APIRouter(tags=["bundles"])
IdempotencyKey = Header(None, alias="Idempotency-Key", max_length=150)


@router.post("/bundles", status_code=201)
async def create_bundle(body: BundleBody, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    bundle = catalog.bundle_from_body(body.model_dump())
    return await blocking(catalog.create_bundle, services_of(request), bundle)


@router.get("/bundles")
async def list_bundles(principal: Caller, request: Request, include_archived: bool = False) -> dict[str, Any]:
    return {"data": await blocking(catalog.list_bundles, services_of(request),
                                   include_archived=include_archived and principal.is_admin)}


@router.get("/bundles/{bundle_id}")
async def get_bundle(bundle_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    bundle, active = await blocking(catalog.get_bundle, services_of(request), bundle_id)
    return catalog.bundle_dict(bundle_id, bundle, active=active)


@router.put("/bundles/{bundle_id}")
async def replace_bundle(bundle_id: ResourceId, body: BundleBody, principal: Caller,
                         request: Request) -> dict[str, Any]:
    require_admin(principal)
    bundle = catalog.bundle_from_body(body.model_dump())
    return await blocking(catalog.replace_bundle, services_of(request), bundle_id, bundle)


@router.delete("/bundles/{bundle_id}")
async def archive_bundle(bundle_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    return await blocking(catalog.archive_bundle, services_of(request), bundle_id)


@router.post("/orgs/{org_id}/purchases", status_code=201)
async def create_purchase(org_id: OrgId, body: PurchaseCreate, principal: Caller, request: Request,
                          idempotency_key: str | None = IdempotencyKey) -> Response:
    require_org(principal, org_id, "manage")
    services = services_of(request)

    async def produce() -> tuple[int, Any]:
        created, found = await blocking(catalog.purchase, services, org_id, body.bundle_id,
                                        body.payment_reference, body.quantity)
        return (201 if created else 200), found

    print_ = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    return await idempotent(services, principal, idempotency_key, print_, produce)


@router.get("/orgs/{org_id}/purchases")
async def list_purchases(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(catalog.list_purchases, services_of(request), org_id)}
