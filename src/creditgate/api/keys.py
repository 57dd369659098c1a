"""Organization API keys: create (the secret is shown once), list, get, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from creditgate.api import keystore
from creditgate.api.auth import Caller, Principal, require_org
from creditgate.api.common import blocking, services_of, time_in
from creditgate.api.schemas import KeyCreate, OrgId, ResourceId
from creditgate.errors import Forbidden, NotFound

router = APIRouter(tags=["keys"])


@router.post("/orgs/{org_id}/keys", status_code=201)
async def create_key(org_id: OrgId, body: KeyCreate, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    scopes = frozenset(body.scopes)
    project_id = body.project_id
    if not principal.is_admin:
        # A key can hand out no more than it has: no wider scopes, no escape from its project.
        if not scopes <= principal.scopes:
            raise Forbidden("a key cannot create a key with scopes it lacks", param="scopes")
        if principal.project_id is not None:
            if project_id not in (None, principal.project_id):
                raise Forbidden("this key may only create keys for its own project", param="project_id")
            project_id = principal.project_id
    key, secret = await blocking(
        keystore.create_key, services_of(request), kind="org", name=body.name, org_id=org_id,
        scopes=sorted(scopes), project_id=project_id, expires_at_us=time_in(body.expires_at, "expires_at"))
    return {**key.to_dict(), "key": secret}


@router.get("/orgs/{org_id}/keys")
async def list_keys(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    found = await blocking(keystore.list_keys, services_of(request), org_id)
    return {"data": [key.to_dict() for key in found if _within_reach(principal, key)]}


@router.get("/orgs/{org_id}/keys/{key_id}")
async def get_key(org_id: OrgId, key_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return (await _reachable_key(principal, request, org_id, key_id)).to_dict()


@router.delete("/orgs/{org_id}/keys/{key_id}")
async def revoke_key(org_id: OrgId, key_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    await _reachable_key(principal, request, org_id, key_id)
    return (await blocking(keystore.revoke_key, services_of(request), org_id, key_id)).to_dict()


def _within_reach(principal: Principal, key: keystore.ApiKey) -> bool:
    """A project-scoped key manages its project's keys only (admins carry no project)."""
    return principal.project_id is None or key.project_id == principal.project_id


async def _reachable_key(principal: Principal, request: Request, org_id: str,
                         key_id: str) -> keystore.ApiKey:
    key = await blocking(keystore.get_key, services_of(request), org_id, key_id)
    if not _within_reach(principal, key):
        # The same answer as for an id that is not in the organization at all: a project key
        # learns nothing of the keys outside its project.
        raise NotFound(f"key {key_id} not found", param="key_id")
    return key
