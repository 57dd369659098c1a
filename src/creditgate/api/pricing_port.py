"""Where the API finds prices: the pricing part's engine, or a card document stored through the API.

``services.extras["pricing"]`` wins when present: either a :class:`PricingEngine` or an object
with an ``engine`` attribute or method that gives one (the pricing part registers it). Otherwise
the card document last stored with ``PUT /api/v1/rate-card`` is used; each process re-reads it
at most every ``CARD_REFRESH_S``.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from sqlalchemy import select

from creditgate.bootstrap import Services
from creditgate.errors import NotFound
from creditgate.pricing._exact import load_json_exact
from creditgate.pricing.card_files import parse_card_document
from creditgate.pricing.rating import PricingEngine
from creditgate.storage.tables_api import api_rate_cards

CARD_REFRESH_S: Final = 1.0
_EXTRA: Final = "api.pricing_cache"


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checked_at = float("-inf")
        self.version_us = -1
        self.engine: PricingEngine | None = None


def pricing_engine(services: Services) -> PricingEngine:
    """The engine that prices usage now; NotFound when no rate card is configured."""
    provided = services.extras.get("pricing")
    if provided is not None:
        if hasattr(provided, "quote"):
            return provided  # type: ignore[no-any-return]
        engine = getattr(provided, "engine", None)
        engine = engine() if callable(engine) else engine
        if engine is not None:
            return engine  # type: ignore[no-any-return]
    cache: _Cache = services.extras.setdefault(_EXTRA, _Cache())
    now = time.monotonic()
    if now - cache.checked_at > CARD_REFRESH_S:
        with cache.lock:
            with services.database.read() as connection:
                row = connection.execute(select(api_rate_cards).order_by(
                    api_rate_cards.c.updated_at_us.desc()).limit(1)).first()
            if row is not None and row.updated_at_us != cache.version_us:
                document = parse_card_document(load_json_exact(row.document, source="rate_card"),
                                               source="rate_card")
                cache.engine = PricingEngine(document.card, overrides=document.overrides,
                                             registry=document.registry, clock=services.clock)
                cache.version_us = row.updated_at_us
            cache.checked_at = now
    if cache.engine is None:
        raise NotFound("no rate card is configured: PUT one to /api/v1/rate-card", param="model")
    return cache.engine


def store_card(services: Services, text: bytes) -> PricingEngine:
    """Validate and store a rate card document (JSON); it replaces the previous one."""
    document = parse_card_document(load_json_exact(text, source="rate_card"), source="rate_card")
    now = services.clock.now_us()
    with services.database.write() as connection:
        latest = connection.execute(select(api_rate_cards.c.updated_at_us).order_by(
            api_rate_cards.c.updated_at_us.desc()).limit(1)).scalar()
        stamp = max(now, (latest or 0) + 1)
        connection.execute(api_rate_cards.delete())
        connection.execute(api_rate_cards.insert().values(
            name=document.card.name, document=text.decode(), updated_at_us=stamp))
    cache: _Cache = services.extras.setdefault(_EXTRA, _Cache())
    cache.checked_at = float("-inf")
    return PricingEngine(document.card, overrides=document.overrides, registry=document.registry,
                         clock=services.clock)
