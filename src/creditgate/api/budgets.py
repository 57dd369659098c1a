"""Budgets: sub-budgets per project or key, enforced inside the same reservation as credits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from creditgate.api import keystore
from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, credits_in, services_of
from creditgate.api.schemas import Amount, OrgId, Strict
from creditgate.bootstrap import Services
from creditgate.clock import iso
from creditgate.errors import Forbidden, NotFound
from creditgate.ledger.credits import format_amount
from creditgate.ledger.records import Budget

router = APIRouter(tags=["budgets"])


class BudgetSet(Strict):
    subject: Annotated[str, Field(pattern=r"^(project|key):[A-Za-z0-9_]{1,40}$",
                                  description="project:<project id> or key:<key id>")]
    cap: Amount
    mode: Literal["hard", "soft", "off"] = "hard"
    period: Literal["day", "month"] = "month"


def budget_dict(budget: Budget) -> dict[str, Any]:
    return {"id": budget.id, "subject": budget.subject, "cap": format_amount(budget.cap), "mode": budget.mode,
            "period": budget.period, "spent": format_amount(budget.spent), "held": format_amount(budget.held),
            "remaining": format_amount(max(budget.cap - budget.spent - budget.held, 0)),
            "period_start": iso(budget.period_start_us)}


@router.put("/orgs/{org_id}/budgets")
async def set_budget(org_id: OrgId, body: BudgetSet, principal: Caller, request: Request) -> dict[str, Any]:
    """Create or change the budget of one project or key (admin, or an org key with ``manage``)."""
    require_org(principal, org_id, "manage")
    services = services_of(request)
    if principal.project_id is not None:
        await blocking(_require_within_project, services, principal, org_id, body.subject)
    ledger = services.ledger
    result = await blocking(ledger.set_budget, org_id, body.subject, credits_in(body.cap, "cap", allow_zero=True),
                            mode=body.mode, period=body.period)
    found = await blocking(ledger.list_budgets, org_id)
    return budget_dict(next(b for b in found if b.id == result["budget_id"]))


def _require_within_project(services: Services, principal: Any, org_id: str, subject: str) -> None:
    """A project-scoped key budgets only the other keys of its project: its project's cap and its
    own are set from outside (an org-wide key or an admin), or a team could lift the cap it was
    given. Otherwise 403, as for creating a key outside its project. An unknown key id gets the
    same answer, so that the answer tells nothing of the keys outside the project."""
    kind, _, subject_id = subject.partition(":")
    allowed = False
    if kind == "key" and subject_id != principal.key_id:
        try:
            allowed = keystore.get_key(services, org_id, subject_id).project_id == principal.project_id
        except NotFound:
            allowed = False
    if not allowed:
        raise Forbidden("a project key may set budgets only for the other keys of its project",
                        param="subject")


@router.get("/orgs/{org_id}/budgets")
async def list_budgets(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    services = services_of(request)
    found = await blocking(services.ledger.list_budgets, org_id)
    if principal.project_id is not None:
        # A project-scoped key sees its project's budget and its keys' only.
        keys = await blocking(keystore.list_keys, services, org_id)
        visible = {f"project:{principal.project_id}"} | {
            f"key:{key.id}" for key in keys if key.project_id == principal.project_id}
        found = [budget for budget in found if budget.subject in visible]
    return {"data": [budget_dict(budget) for budget in found]}
