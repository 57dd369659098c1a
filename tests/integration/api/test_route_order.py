"""An inference request is matched against the gateway's routes before the REST API's.

Routes are tried in order; behind the API's routers every /v1 request tried some sixty routes
first (about 0.2 ms a request in `creditgate serve`). No /v1 path overlaps another, so the
gateway's come first.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.routing import APIRoute
from starlette.routing import Route

from creditgate.api.app import create_app
from creditgate.bootstrap import bootstrap


def test_the_gateway_routes_come_before_the_rest_apis(tmp_path: Path) -> None:
    services = bootstrap(f"sqlite:///{tmp_path / 'routes.db'}")
    try:
        routes = create_app(services).router.routes
        paths = [getattr(route, "path", None) for route in routes]
        first_gateway = paths.index("/v1/chat/completions")
        ahead = routes[:first_gateway]
        # Only FastAPI's own documentation routes (plain Starlette routes) may come first: no API
        # route and no included router.
        assert all(type(route) is Route and not isinstance(route, APIRoute) for route in ahead), ahead
        assert {"/v1/completions", "/v1/embeddings", "/v1/models"} <= set(paths[first_gateway:first_gateway + 5])
        assert any("/api/v1/orgs" in str(getattr(route, "path", "")) or type(route).__name__ == "_IncludedRouter"
                   for route in routes[first_gateway:])  # the REST API is still there, after
    finally:
        services.close()
