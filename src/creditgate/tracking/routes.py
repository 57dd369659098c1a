"""Tracking over HTTP: the forecast, alert rules and alerts, webhook endpoints and deliveries
under ``/api/v1``; ``/metrics``; and the dashboard. ``install(app, services)`` adds them all.

``/metrics`` is open by default, as Prometheus scrapes usually are on a private network; set
``CREDITGATE_METRICS_TOKEN`` to require ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from creditgate.api.auth import Caller, require_org
from creditgate.api.common import blocking, services_of
from creditgate.api.schemas import OrgId, ResourceId
from creditgate.errors import Unauthorized
from creditgate.text import TEXT_PATTERN
from creditgate.tracking.metrics import GatewayHttpMetrics, metrics
from creditgate.tracking.service import Tracking, get_tracking

API_PREFIX: Final = "/api/v1"
METRICS_TOKEN_ENV: Final = "CREDITGATE_METRICS_TOKEN"

router = APIRouter(tags=["tracking"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleCreate(_Strict):
    kind: Literal["available_below", "depletion_within", "expiring_waste", "spend_spike"]
    params: Annotated[dict[str, Any], Field(max_length=4)]
    hysteresis_percent: Annotated[int, Field(ge=0, le=100, strict=True)] = 10


class EndpointCreate(_Strict):
    url: Annotated[str, Field(min_length=1, max_length=500, pattern=TEXT_PATTERN)]
    event_types: Annotated[list[Annotated[str, Field(max_length=40, pattern=TEXT_PATTERN)]],
                           Field(min_length=1, max_length=20)] | None = None
    description: Annotated[str, Field(max_length=200, pattern=TEXT_PATTERN)] = ""


class Rotate(_Strict):
    overlap_s: Annotated[int, Field(ge=0, le=7 * 86_400, strict=True)] = 86_400


def tracking_of(request: Request) -> Tracking:
    return get_tracking(services_of(request))


@router.get("/orgs/{org_id}/forecast")
async def get_forecast(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    """Burn rate, depletion date with a range, projected waste per grant, recommended purchase."""
    require_org(principal, org_id, "read")
    tracking = tracking_of(request)
    return (await blocking(tracking.forecast, org_id)).to_dict()


@router.get("/orgs/{org_id}/alert-rules")
async def list_rules(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(tracking_of(request).rules.list_rules, org_id)}


@router.post("/orgs/{org_id}/alert-rules", status_code=201)
async def create_rule(org_id: OrgId, body: RuleCreate, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    services = services_of(request)
    await blocking(services.ledger.get_org, org_id)
    return await blocking(tracking_of(request).rules.create, org_id, body.kind, body.params,
                          hysteresis_percent=body.hysteresis_percent)


@router.delete("/orgs/{org_id}/alert-rules/{rule_id}")
async def delete_rule(org_id: OrgId, rule_id: ResourceId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return await blocking(tracking_of(request).rules.delete, org_id, rule_id)


@router.get("/orgs/{org_id}/alerts")
async def list_alerts(org_id: OrgId, principal: Caller, request: Request,
                      limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(tracking_of(request).rules.alerts, org_id, limit=limit)}


@router.get("/orgs/{org_id}/webhooks")
async def list_endpoints(org_id: OrgId, principal: Caller, request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return {"data": await blocking(tracking_of(request).webhooks.list_endpoints, org_id)}


@router.post("/orgs/{org_id}/webhooks", status_code=201)
async def create_endpoint(org_id: OrgId, body: EndpointCreate, principal: Caller,
                          request: Request) -> dict[str, Any]:
    """Create an endpoint; the answer shows its ``whsec_`` secret."""
    require_org(principal, org_id, "manage")
    await blocking(services_of(request).ledger.get_org, org_id)
    return await blocking(tracking_of(request).webhooks.create_endpoint, org_id, body.url,
                          event_types=body.event_types, description=body.description)


@router.get("/orgs/{org_id}/webhooks/{endpoint_id}")
async def get_endpoint(org_id: OrgId, endpoint_id: ResourceId, principal: Caller,
                       request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return await blocking(tracking_of(request).webhooks.get_endpoint, org_id, endpoint_id, with_secret=True)


@router.post("/orgs/{org_id}/webhooks/{endpoint_id}/rotate")
async def rotate_secret(org_id: OrgId, endpoint_id: ResourceId, body: Rotate, principal: Caller,
                        request: Request) -> dict[str, Any]:
    """A new secret; the old one also signs for ``overlap_s`` seconds."""
    require_org(principal, org_id, "manage")
    return await blocking(tracking_of(request).webhooks.rotate_secret, org_id, endpoint_id,
                          overlap_s=body.overlap_s)


@router.post("/orgs/{org_id}/webhooks/{endpoint_id}/disable")
async def disable_endpoint(org_id: OrgId, endpoint_id: ResourceId, principal: Caller,
                           request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return await blocking(tracking_of(request).webhooks.set_enabled, org_id, endpoint_id, False)


@router.get("/orgs/{org_id}/webhook-deliveries")
async def list_deliveries(org_id: OrgId, principal: Caller, request: Request,
                          limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    require_org(principal, org_id, "read")
    return {"data": await blocking(tracking_of(request).webhooks.list_deliveries, org_id, limit=limit)}


@router.get("/orgs/{org_id}/webhook-deliveries/{delivery_id}")
async def get_delivery(org_id: OrgId, delivery_id: ResourceId, principal: Caller,
                       request: Request) -> dict[str, Any]:
    """A delivery and its log of attempts."""
    require_org(principal, org_id, "read")
    return await blocking(tracking_of(request).webhooks.get_delivery, org_id, delivery_id)


@router.post("/orgs/{org_id}/webhook-deliveries/{delivery_id}/redeliver")
async def redeliver(org_id: OrgId, delivery_id: ResourceId, principal: Caller,
                    request: Request) -> dict[str, Any]:
    require_org(principal, org_id, "manage")
    return await blocking(tracking_of(request).webhooks.redeliver, org_id, delivery_id)


async def metrics_endpoint(request: Request) -> Response:
    token = os.environ.get(METRICS_TOKEN_ENV, "")
    if token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise Unauthorized("this endpoint needs Authorization: Bearer <CREDITGATE_METRICS_TOKEN>")
    body, content_type = await blocking(metrics().exposition)
    return Response(body, media_type=content_type)


def install(app: FastAPI, services: Any) -> Tracking:
    """Add tracking's API routes, ``/metrics``, the gateway HTTP metrics and the dashboard."""
    from creditgate.tracking import dashboard

    tracking = get_tracking(services)
    metrics().bind(services.database)
    from creditgate.api.errors import error_responses

    api = APIRouter(prefix=API_PREFIX, responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429))
    api.include_router(router)
    app.include_router(api)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(GatewayHttpMetrics)
    dashboard.install(app, services)
    return tracking
