"""Organizations: create, list, get and update (admins); an org key may read its own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import select, update

from creditgate.api.auth import Caller, require_admin, require_org
from creditgate.api.common import blocking, credits_in, services_of
from creditgate.api.limits import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from creditgate.api.schemas import CursorQuery, OrgCreate, OrgId, OrgUpdate
from creditgate.bootstrap import Services
from creditgate.clock import iso
from creditgate.errors import Conflict
from creditgate.ledger.credits import format_amount
from creditgate.ledger.records import Org
from creditgate.ledger.service import check_name
from creditgate.storage.schema import orgs

router = APIRouter(tags=["organizations"])


def org_dict(org: Org) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "created_at": iso(org.created_at_us),
            "overdraft_limit": format_amount(org.overdraft_limit), "debt": format_amount(org.debt_total)}


@router.post("/orgs", status_code=201)
async def create_org(body: OrgCreate, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    services = services_of(request)
    limit = credits_in(body.overdraft_limit, "overdraft_limit", allow_zero=True) if body.overdraft_limit else 0
    org = await blocking(services.ledger.create_org, body.name, overdraft_limit=limit)
    billing = services.extras.get("billing")
    if billing is not None:
        await blocking(billing.on_org_created, org.id)
    return org_dict(org)


@router.get("/orgs")
async def list_orgs(principal: Caller, request: Request, after: CursorQuery = None,
                    limit: int = Query(PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX)) -> dict[str, Any]:
    require_admin(principal)
    found = await blocking(services_of(request).ledger.list_orgs, limit=limit + 1, after=after or None)
    page = found[:limit]
    return {"data": [org_dict(org) for org in page], "has_more": len(found) > limit,
            "next_cursor": page[-1].id if len(found) > limit else None}


@router.get("/orgs/{org_id}")
async def get_org(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return org_dict(await blocking(services_of(request).ledger.get_org, org_id))


def _rename(services: Services, org_id: str, name: str) -> None:
    with services.database.write() as connection:
        services.ledger.get_org(org_id, connection=connection)
        other = connection.execute(select(orgs.c.id).where((orgs.c.name == name) & (orgs.c.id != org_id))).first()
        if other is not None:
            raise Conflict(f"an organization named {name!r} already exists", param="name")
        connection.execute(update(orgs).where(orgs.c.id == org_id).values(name=name))


@router.patch("/orgs/{org_id}")
async def update_org(org_id: OrgId, body: OrgUpdate, principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    services = services_of(request)
    await blocking(services.ledger.get_org, org_id)
    if body.name is not None:
        await blocking(_rename, services, org_id, check_name(body.name))
    if body.overdraft_limit is not None:
        limit = credits_in(body.overdraft_limit, "overdraft_limit", allow_zero=True)
        await blocking(services.ledger.set_overdraft_limit, org_id, limit)
    return org_dict(await blocking(services.ledger.get_org, org_id))
