"""Projects inside an organization."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, services_of
from creditgate.api.schemas import OrgId, ProjectCreate, ResourceId
from creditgate.clock import iso
from creditgate.errors import Forbidden, NotFound

router = APIRouter(tags=["projects"])


def project_dict(project: dict[str, Any]) -> dict[str, Any]:
    return {"id": project["id"], "org_id": project["org_id"], "name": project["name"],
            "created_at": iso(project["created_at_us"])}


@router.post("/orgs/{org_id}/projects", status_code=201)
async def create_project(org_id: OrgId, body: ProjectCreate, principal: Caller,
                         request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    if principal.project_id is not None:
        raise Forbidden("a project key cannot create projects", param="org_id")
    project = await blocking(services_of(request).ledger.create_project, org_id, body.name)
    return project_dict(project)


@router.get("/orgs/{org_id}/projects")
async def list_projects(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    services = services_of(request)
    await blocking(services.ledger.get_org, org_id)
    found = await blocking(services.ledger.list_projects, org_id)
    # A project-scoped key sees its own project only, as it sees only that project's keys.
    return {"data": [project_dict(project) for project in found
                     if principal.project_id in (None, project["id"])]}


@router.get("/orgs/{org_id}/projects/{project_id}")
async def get_project(org_id: OrgId, project_id: ResourceId, principal: Caller,
                      request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    found = await blocking(services_of(request).ledger.list_projects, org_id)
    for project in found:
        if project["id"] == project_id and principal.project_id in (None, project_id):
            return project_dict(project)
    raise NotFound(f"project {project_id} not found", param="project_id")
