"""The deployments API (``/api/v1/deployments``) and per-key rate limits, for admin keys.

A deployment is created with JSON, or with ``multipart/form-data`` whose ``file`` part is the
``.onnx`` model and whose ``deployment`` part (or plain fields) holds the JSON fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from creditgate.errors import InvalidInput, PayloadTooLarge, Unauthorized
from creditgate.gateway.deployments import MODEL_BYTES_MAX

Handler = Callable[[Request], Awaitable[Response]]
FILES_MAX: Final = 2
FIELDS_MAX: Final = 50


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _admin(request: Request) -> None:
    from creditgate.api.auth import authenticate, require_admin

    services = request.app.state.services if hasattr(request.app.state, "services") else None
    gateway = request.app.state.gateway
    principal = authenticate(services or gateway.services, request.headers.get("authorization"))
    if principal is None:
        raise Unauthorized("missing API key")
    require_admin(principal)


async def _read_deployment(request: Request) -> tuple[dict[str, Any], bytes | None]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await _form(request)
        data: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name == "file":
                continue
            if name == "deployment":
                data = _deployment_part(value)
            elif isinstance(value, str):
                fields[name] = _form_value(value)
            else:
                raise InvalidInput(f"{name} is a file; only the model, in the file part, may be one",
                                   param=name)
        data.update(fields)  # plain fields win over the same ones in the deployment part
        uploads = form.getlist("file")
        if len(uploads) > 1:
            raise InvalidInput("one model per request: the form has more than one file part", param="file")
        upload = uploads[0] if uploads else None
        if isinstance(upload, str):
            raise InvalidInput("file must be a file part holding the .onnx model, not a text field",
                               param="file")
        model_bytes = None
        if upload is not None:
            model_bytes = await upload.read(MODEL_BYTES_MAX + 1)
            if len(model_bytes) > MODEL_BYTES_MAX:
                raise PayloadTooLarge(f"the model is larger than {MODEL_BYTES_MAX} bytes", param="file")
        return data, model_bytes
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the request body must be a JSON object")
    return data, None


async def _form(request: Request) -> FormData:
    """The multipart form; a body Starlette cannot parse is the client's 422, not a 500.

    Starlette answers a malformed body (no boundary, too many parts, an oversized text part) with
    its own HTTPException(400), which the gateway's guard would turn into a 500 of our own.
    Two files are let through so that a ``deployment`` sent as a file next to the model is named
    as the mistake (with one, Starlette would only say that there are too many files).
    """
    try:
        return await request.form(max_files=FILES_MAX, max_fields=FIELDS_MAX, max_part_size=MODEL_BYTES_MAX)
    except HTTPException as error:
        detail = str(error.detail)
        # Only the model is a file part; every text part is a field of the deployment.
        param = ("file" if detail.startswith("Too many files")
                 else "deployment" if detail.startswith(("Too many fields", "Part exceeded")) else None)
        raise InvalidInput(f"the multipart/form-data body cannot be read: {detail}", param=param) from None


def _deployment_part(value: str | UploadFile) -> dict[str, Any]:
    if not isinstance(value, str):
        raise InvalidInput("deployment must be a text field holding a JSON object, not a file",
                           param="deployment")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidInput("deployment is not valid JSON", param="deployment") from None
    if not isinstance(data, dict):
        raise InvalidInput("deployment must be a JSON object", param="deployment")
    return data


def _form_value(value: str) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def handlers(gateway: Any) -> list[tuple[str, Handler, list[str]]]:
    store = gateway.deployments
    limits = gateway.limit_store

    async def create(request: Request) -> Response:
        _admin(request)
        data, model_bytes = await _read_deployment(request)
        deployment = await asyncio.to_thread(store.create, data, model_bytes=model_bytes)
        return _json(deployment.to_public(), 201)

    async def list_all(request: Request) -> Response:
        _admin(request)
        found = await asyncio.to_thread(store.list)
        return _json({"object": "list", "data": [deployment.to_public() for deployment in found]})

    async def one(request: Request) -> Response:
        _admin(request)
        name = request.path_params["deployment"]
        if request.method == "GET":
            return _json((await asyncio.to_thread(store.get, name)).to_public())
        if request.method == "DELETE":
            await asyncio.to_thread(store.delete, name)
            return _json({"id": name, "deleted": True})
        data, model_bytes = await _read_deployment(request)
        deployment = await asyncio.to_thread(store.update, name, data, model_bytes=model_bytes)
        return _json(deployment.to_public())

    async def list_limits(request: Request) -> Response:
        _admin(request)
        found = await asyncio.to_thread(limits.list)
        return _json({"object": "list", "data": [{"subject": subject, **_limits_dict(value)}
                                                 for subject, value in sorted(found.items())]})

    async def one_limit(request: Request) -> Response:
        _admin(request)
        subject = request.path_params["subject"]
        if request.method == "DELETE":
            await asyncio.to_thread(limits.remove, subject)
            return _json({"subject": subject, "deleted": True})
        data, _ = await _read_deployment(request)
        value = await asyncio.to_thread(limits.put, subject, data)
        return _json({"subject": subject, **_limits_dict(value)})

    return [
        ("/api/v1/deployments", create, ["POST"]),
        ("/api/v1/deployments", list_all, ["GET"]),
        ("/api/v1/deployments/{deployment:path}", one, ["GET", "PATCH", "PUT", "DELETE"]),
        ("/api/v1/rate-limits", list_limits, ["GET"]),
        ("/api/v1/rate-limits/{subject}", one_limit, ["PUT", "DELETE"]),
    ]


def _limits_dict(value: Any) -> dict[str, Any]:
    return {"requests_per_min": value.requests_per_min, "tokens_per_min": value.tokens_per_min,
            "concurrent_max": value.concurrent_max}
