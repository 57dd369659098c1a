"""``POST /api/v1/events``: a JSON array of CloudEvents 1.0 (structured mode) of metered usage.

The body is parsed with orjson and checked by hand (see :mod:`creditgate.usage.events`) rather
than by a request model, because a bad event must be reported on its own while the others in the
batch carry on. The schema below documents the shape for clients and for the OpenAPI spec.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Header, Request, Response

from creditgate.api.auth import Caller, require_scope
from creditgate.api.common import blocking, services_of
from creditgate.api.idempotency import fingerprint, idempotent
from creditgate.api.limits import EVENT_BATCH_MAX
from creditgate.api.pricing_port import pricing_engine
from creditgate.errors import InvalidInput, PayloadTooLarge
from creditgate.usage import ingest

router = APIRouter(tags=["usage"])

_EVENT_SCHEMA = {
    "type": "object",
    "required": ["specversion", "type", "id", "source", "subject", "time", "data"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "type": {"type": "string", "enum": ["creditgate.usage"]},
        "id": {"type": "string", "maxLength": 128},
        "source": {"type": "string", "maxLength": 256},
        "subject": {"type": "string", "description": "org_id[/project/<id>][/key/<id>]"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"type": "string", "enum": ["application/json"]},
        "data": {"type": "object", "required": ["model", "meters"], "properties": {
            "model": {"type": "string"},
            "meters": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
            "tags": {"type": "object", "additionalProperties": {"type": "string"}},
            "scope": {"type": "string", "enum": ["inference", "training"]},
            "latency_ms": {"type": "integer", "minimum": 0}}},
    },
}
_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "array", "maxItems": EVENT_BATCH_MAX, "items": _EVENT_SCHEMA}}}},
}


@router.post("/events", openapi_extra=_OPENAPI)
async def ingest_events(request: Request, principal: Caller,
                        idempotency_key: str | None = Header(None, alias="Idempotency-Key",
                                                             max_length=150)) -> Response:
    require_scope(principal, "inference")
    services = services_of(request)
    body = await request.body()
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not valid JSON", param="body") from None
    if not isinstance(events, list):
        raise InvalidInput("the body must be a JSON array of CloudEvents", param="body")
    if len(events) > EVENT_BATCH_MAX:
        raise PayloadTooLarge(f"at most {EVENT_BATCH_MAX} events per request, got {len(events)}",
                              param="body")
    caller = ingest.Caller(None) if principal.is_admin else ingest.Caller(
        principal.org_id, principal.project_id, principal.key_id)

    async def produce() -> tuple[int, Any]:
        engine = await blocking(pricing_engine, services) if events else None
        results = await blocking(ingest.ingest_batch, services.database, engine, events,
                                 caller=caller, now_us=services.clock.now_us(),
                                 billing=services.extras.get("billing"))
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
        for result in results:
            counts[result["status"]] += 1
        return 200, {"accepted": counts["accepted"], "duplicates": counts["duplicate"],
                     "rejected": counts["rejected"], "results": results}

    print_ = fingerprint("POST", request.url.path, body) if idempotency_key else ""
    return await idempotent(services, principal, idempotency_key, print_, produce)
