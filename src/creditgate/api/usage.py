"""``GET /api/v1/orgs/{org_id}/usage``: credits and meter totals by bucket and group; JSON or CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, services_of, time_in
from creditgate.api.schemas import OrgId
from creditgate.clock import iso
from creditgate.text import TEXT_PATTERN
from creditgate.usage.queries import DAY_US, UsageQuery, run_query, to_csv, totals_of

router = APIRouter(tags=["usage"])
RANGE_DEFAULT_DAYS = 30


@router.get("/orgs/{org_id}/usage", responses={200: {"content": {"text/csv": {}}}})
async def get_usage(org_id: OrgId, principal: Caller, request: Request,
                    start: str | None = Query(None, max_length=64, pattern=TEXT_PATTERN),
                    end: str | None = Query(None, max_length=64, pattern=TEXT_PATTERN),
                    bucket: str = Query("day", pattern=r"^(hour|day|month)$"),
                    group_by: str = Query("", max_length=300, pattern=TEXT_PATTERN,
                                          description="comma-separated: model, project, key, meter, tag:<name>"),
                    format: str = Query("json", pattern=r"^(json|csv)$")) -> Any:
    require_org(principal, org_id, "read")
    services = services_of(request)
    await blocking(services.ledger.get_org, org_id)
    # "is None", not "or": 1970-01-01T00:00:00Z is instant 0, a time the caller gave.
    given_end, given_start = time_in(end, "end"), time_in(start, "start")
    end_us = services.clock.now_us() if given_end is None else given_end
    start_us = end_us - RANGE_DEFAULT_DAYS * DAY_US if given_start is None else given_start
    query = UsageQuery(org_id=org_id, start_us=start_us, end_us=end_us, bucket=bucket,
                       group_by=tuple(part.strip() for part in group_by.split(",") if part.strip()),
                       project_id=principal.project_id)
    rows = await blocking(run_query, services.database, query)
    if format == "csv":
        return Response(to_csv(query, rows), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="usage-{org_id}.csv"'})
    return {"org_id": org_id, "start": iso(start_us), "end": iso(end_us), "bucket": bucket,
            "group_by": list(query.group_by), "totals": totals_of(rows), "data": rows}
