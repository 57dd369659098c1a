"""Rate cards, quotes and price explanations, from :mod:`creditgate.pricing`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from creditgate.api.auth import Caller, require_admin
from creditgate.api.common import blocking, services_of, time_in
from creditgate.api.pricing_port import pricing_engine, store_card
from creditgate.api.schemas import QuoteRequest
from creditgate.clock import iso
from creditgate.pricing.rate_cards import RateCard

router = APIRouter(tags=["pricing"])

_CARD_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["card", "versions"],
    "properties": {"card": {"type": "string"}, "versions": {"type": "array", "items": {"type": "object"}},
                   "meters": {"type": "array", "items": {"type": "object"}},
                   "overrides": {"type": "array", "items": {"type": "object"}}}}}}}}


def card_dict(card: RateCard) -> dict[str, Any]:
    return {"card": card.name, "versions": [
        {"version": version.version, "effective_from": iso(version.effective_from_us),
         "effective_until": iso(version.effective_until_us), "note": version.note,
         "models": {name: {meter: price.to_text() for meter, price in rate.prices.items()}
                    for name, rate in sorted(version.models.items())}}
        for version in card.versions]}


@router.get("/rate-card")
async def get_rate_card(principal: Caller, request: Request) -> dict[str, Any]:
    engine = await blocking(pricing_engine, services_of(request))
    return card_dict(engine.card)


@router.put("/rate-card", openapi_extra=_CARD_BODY)
async def put_rate_card(principal: Caller, request: Request) -> dict[str, Any]:
    require_admin(principal)
    engine = await blocking(store_card, services_of(request), await request.body())
    return card_dict(engine.card)


def _org_for(principal: Any, requested: str | None) -> str | None:
    # An org key is always quoted at its own organization's contract prices.
    return requested if principal.is_admin else principal.org_id


@router.post("/quotes")
async def quote(body: QuoteRequest, principal: Caller, request: Request) -> dict[str, Any]:
    engine = await blocking(pricing_engine, services_of(request))
    charge = engine.quote(body.model, body.usage, time_in(body.at, "at"),
                          org=_org_for(principal, body.org_id))
    return charge.to_dict()


@router.post("/quotes/explain")
async def explain(body: QuoteRequest, principal: Caller, request: Request) -> dict[str, Any]:
    engine = await blocking(pricing_engine, services_of(request))
    explanation = engine.explain(body.model, body.usage, time_in(body.at, "at"),
                                 org=_org_for(principal, body.org_id))
    return {**explanation.to_dict(), "text": explanation.render()}
