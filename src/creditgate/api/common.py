"""Small helpers shared by the route modules: parsing amounts and times, shaping records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from creditgate.bootstrap import Services
from creditgate.clock import iso, parse_iso
from creditgate.errors import InvalidInput
from creditgate.ledger.credits import AmountError, format_amount, parse_amount
from creditgate.ledger.records import Grant, Hold

T = TypeVar("T")


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def blocking(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking use case (it reads or writes the database) off the event loop."""
    return await run_in_threadpool(function, *args, **kwargs)


def credits_in(value: Any, field: str, *, allow_zero: bool = False) -> int:
    try:
        return parse_amount(value, field=field, allow_zero=allow_zero)
    except AmountError as error:
        raise InvalidInput(str(error), param=field) from None


def time_in(value: str | None, field: str) -> int | None:
    return None if value is None else parse_iso(value, field=field)


def grant_dict(grant: Grant) -> dict[str, Any]:
    return {"id": grant.id, "org_id": grant.org_id, "kind": grant.kind, "scope": grant.scope,
            "priority": grant.priority, "status": grant.status,
            "amount": format_amount(grant.amount), "remaining": format_amount(grant.remaining),
            "held": format_amount(grant.held), "available": format_amount(grant.free),
            "effective_at": iso(grant.effective_at_us), "expires_at": iso(grant.expires_at_us),
            "created_at": iso(grant.created_at_us), "cost_basis": format_amount(grant.cost_basis),
            "currency": grant.currency,
            "allow": sorted(grant.allow) if grant.allow is not None else None,
            "source_grant_id": grant.source_grant_id,
            "metadata": orjson.loads(grant.metadata) if grant.metadata else {}}


def hold_dict(hold: Hold) -> dict[str, Any]:
    return {"id": hold.id, "org_id": hold.org_id, "amount": format_amount(hold.amount),
            "scope": hold.scope, "status": hold.status, "model": hold.model,
            "posted": format_amount(hold.posted), "created_at": iso(hold.created_at_us),
            "expires_at": iso(hold.expires_at_us), "resolved_at": iso(hold.resolved_at_us),
            "legs": [{"grant_id": grant_id, "amount": format_amount(amount)}
                     for grant_id, amount in hold.legs],
            "metadata": orjson.loads(hold.metadata) if hold.metadata else {}}
