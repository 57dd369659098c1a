"""One JSON error shape for every 4xx: ``{"error": {"type", "message", "param", "code"}}``.

Operating errors (:mod:`creditgate.errors`) carry their own status and code. FastAPI's request
validation errors and Starlette's routing errors (404, 405) are reshaped to the same form, so a
client needs one error parser. Anything else is a bug: it is logged and answered with a 500 in
the same shape, without a traceback.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from creditgate.errors import CreditgateError, RateLimited
from creditgate.ledger.credits import AmountError

log = logging.getLogger(__name__)

_ROUTING: Final = {
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
}


def error_body(error_type: str, message: str, *, param: str | None = None,
               code: str | None = None, **details: Any) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message, "param": param, "code": code, **details}}


def json_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


async def _creditgate_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, CreditgateError)
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, RateLimited) else None
    return json_error(error.status, error.to_dict(), headers)


async def _amount_error(_request: Request, error: Exception) -> Response:
    message = str(error)
    param = message.split(":", 1)[0] if ":" in message else None
    return json_error(422, error_body("invalid_request_error", message, param=param,
                                      code="invalid_input"))


async def _validation_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {}
    if first.get("type") == "json_invalid":
        # Its location is ("body", <character offset>): the offset belongs in the message, since
        # clients read ``param`` as a field name. ``body`` is what /events names too.
        location = first.get("loc", ())
        offset = location[1] if len(location) > 1 else None
        reason = (first.get("ctx") or {}).get("error")
        detail = f": {reason}" if reason else ""
        where = f" at character {offset}" if isinstance(offset, int) else ""
        return json_error(422, error_body("invalid_request_error",
                                          f"the request body is not valid JSON{detail}{where}",
                                          param="body", code="invalid_input"))
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(location) or None
    message = f"{param}: {first.get('msg', 'invalid')}" if param else str(first.get("msg", "invalid request"))
    return json_error(422, error_body("invalid_request_error", message, param=param,
                                      code="invalid_input"))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    error_type, code = _ROUTING.get(error.status_code, ("invalid_request_error", "invalid_request"))
    headers = dict(error.headers) if error.headers else {}
    if error.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return json_error(error.status_code, error_body(error_type, str(error.detail), code=code),
                      headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _unexpected(_request: Request, error: Exception) -> Response:
    log.exception("unexpected error", exc_info=error)
    return json_error(500, error_body("server_error", "internal error", code="internal_error"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(CreditgateError, _creditgate_error)
    app.add_exception_handler(AmountError, _amount_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["type", "message", "param", "code"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
    }},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries documenting the error shape for ``statuses``."""
    descriptions = {400: "Malformed request", 401: "No or bad API key", 402: "Insufficient credits",
                    403: "Wrong scope or organization", 404: "Not found", 409: "Conflict",
                    413: "Body too large", 422: "Invalid input", 429: "Rate limited"}
    return {status: {"description": descriptions.get(status, "Error"),
                     "content": {"application/json": {"schema": ERROR_SCHEMA}}}
            for status in statuses}
