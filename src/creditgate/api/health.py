"""``/healthz``: the process answers and the database does."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from creditgate.api.common import blocking, services_of
from creditgate.bootstrap import Services

router = APIRouter(tags=["health"])


def _ping(services: Services) -> None:
    with services.database.read() as connection:
        connection.execute(text("SELECT 1"))


@router.get("/healthz")
async def healthz(request: Request) -> Any:
    try:
        await blocking(_ping, services_of(request))
    except Exception as error:  # noqa: BLE001 - the answer itself is the report
        return JSONResponse({"status": "unavailable", "database": type(error).__name__}, status_code=503)
    return {"status": "ok"}
