"""The FastAPI application: REST under ``/api/v1``, its OpenAPI spec and docs, ``/healthz``, and
the OpenAI-compatible gateway under ``/v1`` when that part is installed."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from creditgate.api import (
    balance,
    billing_routes,
    budgets,
    bundles,
    errors,
    events,
    grants,
    health,
    holds,
    journal,
    keys,
    orgs,
    pricing,
    projects,
    usage,
)
from creditgate.api.limits import (
    BODY_BYTES_MAX,
    REQUEST_BURST_MAX,
    REQUESTS_PER_KEY_PER_S,
    BodySizeLimit,
    RateLimiter,
)
from creditgate.bootstrap import Services

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)

_RESOURCES = (orgs, projects, keys, grants, holds, balance, journal, bundles, pricing, events, usage,
              billing_routes, budgets)


def _rate_limiter(services: Services, rate_per_s: float, burst: int) -> Any:
    """Shared by every process through Redis when CREDITGATE_REDIS_URL is set, else in process."""
    redis_url = os.environ.get("CREDITGATE_REDIS_URL")
    if not redis_url:
        return RateLimiter(rate_per_s, burst)
    from creditgate.api.shared_limits import RedisRateLimiter

    return RedisRateLimiter(redis_url, services.clock, rate_per_s, burst)


def create_app(services: Services, *, requests_per_key_per_s: float = REQUESTS_PER_KEY_PER_S,
               request_burst: int = REQUEST_BURST_MAX, body_bytes_max: int = BODY_BYTES_MAX,
               close_services_on_shutdown: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        closer = getattr(app.state.rate_limiter, "close", None)  # the Redis one holds connections
        if closer is not None:
            closer()
        if close_services_on_shutdown:
            services.close()

    app = FastAPI(
        title="creditgate", version="1.0.0", lifespan=lifespan,
        description="Prepaid AI-inference credits: organizations, keys, grants, holds, usage.",
        openapi_url=f"{API_PREFIX}/openapi.json", docs_url=f"{API_PREFIX}/docs", redoc_url=None)
    app.state.services = services
    app.state.rate_limiter = _rate_limiter(services, requests_per_key_per_s, request_burst)
    app.state.body_bytes_by_prefix = {}  # parts that take larger bodies register them here
    errors.install(app)
    # The gateway's /v1 routes first: a request is matched against the routes in order, and
    # behind the REST API's some sixty routes each inference request paid for trying them all
    # (about 0.2 ms; no /v1 path overlaps another).
    _install_gateway(app, services)
    api = APIRouter(prefix=API_PREFIX,
                    responses=errors.error_responses(400, 401, 402, 403, 404, 409, 413, 422, 429))
    for module in _RESOURCES:
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(health.router)
    _install_part(app, services, "creditgate.tracking.routes")  # metrics, alerts, webhooks, dashboard
    app.add_middleware(BodySizeLimit, limit_bytes=body_bytes_max, by_prefix=app.state.body_bytes_by_prefix)
    return app


def _install_gateway(app: FastAPI, services: Services) -> None:
    """Mount ``creditgate.gateway.routes`` if it exists (built by the gateway part)."""
    try:
        routes: Any = importlib.import_module("creditgate.gateway.routes")
    except ImportError as error:
        log.info("gateway not mounted: %s", error)
        return
    install = getattr(routes, "install", None)
    if callable(install):
        install(app, services)
    elif getattr(routes, "router", None) is not None:
        app.include_router(routes.router)


def _install_part(app: FastAPI, services: Services, module_name: str) -> None:
    """Call ``install(app, services)`` of a part's routes module if that part is present."""
    try:
        module: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        log.info("%s not mounted: %s", module_name, error)
        return
    module.install(app, services)
