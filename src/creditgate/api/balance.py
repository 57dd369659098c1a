"""An organization's balance: available, pending (held) and the grants behind them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, grant_dict, services_of
from creditgate.api.schemas import OrgId
from creditgate.ledger.credits import format_amount

router = APIRouter(tags=["balance"])


@router.get("/orgs/{org_id}/balance")
async def get_balance(org_id: OrgId, principal: Caller, request: Request,
                      scope: str | None = Query(None, pattern=r"^(inference|training)$")) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    balance = await blocking(services_of(request).ledger.balance, org_id, scope=scope)
    return {"org_id": org_id, "available": format_amount(balance.available),
            "pending": format_amount(balance.pending), "debt": format_amount(balance.debt),
            "grants": [grant_dict(grant) for grant in balance.grants]}
