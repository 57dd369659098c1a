"""HTTP entrypoints of the gateway: the OpenAI-compatible ``/v1`` and the deployments API.

Routes are plain Starlette endpoints (no dependency injection on the hot path). Operating errors
become OpenAI-shaped JSON here and only here. ``install(app, services)`` adds everything to an
existing Starlette or FastAPI app; ``create_gateway_app(services)`` builds a standalone one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from creditgate.errors import CreditgateError, RateLimited
from creditgate.gateway import admin_routes
from creditgate.gateway.deployments import MODEL_BYTES_MAX
from creditgate.gateway.service import Gateway, get_gateway
from creditgate.ledger.credits import AmountError

log = logging.getLogger(__name__)
UPLOAD_OVERHEAD_BYTES: Final = 1024 * 1024  # a deployment's other fields, multipart boundaries
Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(error: CreditgateError) -> Response:
    headers = {"retry-after": str(error.retry_after_s)} if isinstance(error, RateLimited) else None
    return Response(orjson.dumps(error.to_dict()), status_code=error.status,
                    media_type="application/json", headers=headers)


def guarded(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except CreditgateError as error:
            return error_response(error)
        except AmountError as error:
            return Response(orjson.dumps({"error": {"type": "invalid_request_error", "message": str(error),
                                                    "param": None, "code": "invalid_amount"}}),
                            status_code=422, media_type="application/json")
        except Exception:
            log.exception("gateway request failed")
            return Response(orjson.dumps({"error": {"type": "server_error", "param": None,
                                                    "message": "internal error in the gateway",
                                                    "code": "internal_error"}}),
                            status_code=500, media_type="application/json")
    return endpoint


def routes(gateway: Gateway) -> list[Route]:
    async def chat(request: Request) -> Response:
        return await gateway.openai_request(request, "chat")

    async def completions(request: Request) -> Response:
        return await gateway.openai_request(request, "completions")

    async def embeddings(request: Request) -> Response:
        return await gateway.openai_request(request, "embeddings")

    async def predict(request: Request) -> Response:
        return await gateway.predict_request(request, request.path_params["deployment"])

    async def models(request: Request) -> Response:
        principal = gateway.authenticate(request.headers.get("authorization"))
        data = [{"id": deployment.name, "object": "model", "created": deployment.created_at_us // 1_000_000,
                 "owned_by": "creditgate", "kind": deployment.kind}
                for deployment in sorted(await gateway.deployments.all(), key=lambda d: d.name)
                if deployment.allows(principal.org_id)]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    return [
        Route("/v1/chat/completions", guarded(chat), methods=["POST"]),
        Route("/v1/completions", guarded(completions), methods=["POST"]),
        Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/v1/predict/{deployment}", guarded(predict), methods=["POST"]),
        *[Route(path, guarded(handler), methods=methods)
          for path, handler, methods in admin_routes.handlers(gateway)],
    ]


def install(app: Any, services: Any) -> Gateway:
    """Add the gateway's routes to ``app``; the gateway is closed by ``services.close()``."""
    gateway = get_gateway(services)
    for route in routes(gateway):
        app.router.routes.append(route)
    app.state.gateway = gateway
    # The API's body cap is smaller than what the gateway takes: its own requests (checked again
    # by the pipeline) and model uploads (base64 in JSON, or multipart, with room for the rest).
    body_caps = getattr(app.state, "body_bytes_by_prefix", None)
    if body_caps is not None:
        body_caps["/v1/"] = gateway.config.body_bytes_max
        body_caps["/api/v1/deployments"] = MODEL_BYTES_MAX * 4 // 3 + UPLOAD_OVERHEAD_BYTES
    return gateway


def create_gateway_app(services: Any) -> Starlette:
    """A standalone app with only the gateway (for the benchmark and multi-process tests)."""
    gateway = get_gateway(services)
    app = Starlette(routes=routes(gateway))
    app.state.gateway = gateway
    app.state.services = services
    return app
