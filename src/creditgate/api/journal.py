"""The journal, cursor-paginated: ``after`` is the ``next_cursor`` of the previous page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, services_of
from creditgate.api.limits import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from creditgate.api.schemas import OrgId
from creditgate.clock import iso
from creditgate.ledger.credits import format_amount

router = APIRouter(tags=["journal"])


@router.get("/orgs/{org_id}/journal")
async def journal_page(org_id: OrgId, principal: Caller, request: Request,
                       after: str | None = Query(None, pattern=r"^\d{1,18}$"),
                       limit: int = Query(PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX)) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    page = await blocking(services_of(request).ledger.journal_page, org_id,
                          after_seq=int(after or 0), limit=limit)
    # A full page may be followed by more; the next page answers (possibly empty) either way.
    has_more = len(page) == limit
    return {"data": [{"seq": row["seq"], "kind": row["kind"], "at": iso(row["at_us"]),
                      "ref": row["ref"], "result": row["result"], "hash": row["hash"],
                      "prev_hash": row["prev_hash"],
                      "entries": [{**entry, "amount": format_amount(entry["amount"])}
                                  for entry in row["entries"]]} for row in page],
            "has_more": has_more, "next_cursor": str(page[-1]["seq"]) if has_more and page else None}
