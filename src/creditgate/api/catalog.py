"""Use cases of the bundle catalog and purchases.

Bundles are validated and turned into grant specs by :mod:`creditgate.pricing.bundles`; this
module stores the catalog and books purchases. A purchase is idempotent on its
``payment_reference`` within the organization: the grants carry ledger idempotency keys derived
from it, so a retry (or a concurrent duplicate) creates them once, and the purchase row is
written after them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from creditgate.bootstrap import Services
from creditgate.clock import iso
from creditgate.errors import Conflict, IdempotencyConflict, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.credits import format_amount
from creditgate.pricing.bundles import Bundle, RolloverPolicy, parse_bundle, purchase_grants
from creditgate.storage import ledger_store
from creditgate.storage.tables_api import api_bundles, api_purchases


def bundle_from_body(body: dict[str, Any]) -> Bundle:
    data = {key: value for key, value in body.items() if value is not None}
    return parse_bundle(data, field="bundle", conversion=None)


def bundle_dict(bundle_id: str, bundle: Bundle, *, active: bool = True) -> dict[str, Any]:
    return {"id": bundle_id, **bundle.to_dict(), "active": active}


def _bundle_from_row(row: Any) -> Bundle:
    return Bundle(name=row.name, price=row.price, currency=row.currency, credits=row.credits,
                  bonus_credits=row.bonus_credits, validity_days=row.validity_days,
                  rollover=RolloverPolicy.parse(orjson.loads(row.rollover)), scope=row.scope,
                  priority=row.priority, description=row.description)


def _rollover_text(policy: RolloverPolicy) -> str:
    """The policy in the form :meth:`RolloverPolicy.parse` reads back."""
    data = policy.to_dict()
    kind = data["kind"]
    if kind == "capped_amount":
        return orjson.dumps({kind: data["cap_credits"]}).decode()
    if kind == "capped_percent":
        return orjson.dumps({kind: data["cap_percent"]}).decode()
    return orjson.dumps(kind).decode()


def _values(bundle: Bundle) -> dict[str, Any]:
    return {"name": bundle.name, "price": bundle.price, "currency": bundle.currency,
            "credits": bundle.credits, "bonus_credits": bundle.bonus_credits,
            "validity_days": bundle.validity_days,
            "rollover": _rollover_text(bundle.rollover), "scope": bundle.scope,
            "priority": bundle.priority, "description": bundle.description}


def create_bundle(services: Services, bundle: Bundle) -> dict[str, Any]:
    bundle_id = new_id("bnd")
    now = services.clock.now_us()
    try:
        with services.database.write() as connection:
            connection.execute(insert(api_bundles).values(
                id=bundle_id, created_at_us=now, updated_at_us=now, active=1, **_values(bundle)))
    except IntegrityError:
        raise Conflict(f"a bundle named {bundle.name!r} already exists", param="name") from None
    return bundle_dict(bundle_id, bundle)


def get_bundle(services: Services, bundle_id: str) -> tuple[Bundle, bool]:
    with services.database.read() as connection:
        row = connection.execute(select(api_bundles).where(api_bundles.c.id == bundle_id)).first()
    if row is None:
        raise NotFound(f"bundle {bundle_id} not found", param="bundle_id")
    return _bundle_from_row(row), bool(row.active)


def list_bundles(services: Services, *, include_archived: bool = False) -> list[dict[str, Any]]:
    query = select(api_bundles).order_by(api_bundles.c.price, api_bundles.c.name)
    if not include_archived:
        query = query.where(api_bundles.c.active == 1)
    with services.database.read() as connection:
        rows = connection.execute(query).all()
    return [bundle_dict(row.id, _bundle_from_row(row), active=bool(row.active)) for row in rows]


def replace_bundle(services: Services, bundle_id: str, bundle: Bundle) -> dict[str, Any]:
    get_bundle(services, bundle_id)
    try:
        with services.database.write() as connection:
            connection.execute(update(api_bundles).where(api_bundles.c.id == bundle_id).values(
                updated_at_us=services.clock.now_us(), **_values(bundle)))
    except IntegrityError:
        raise Conflict(f"a bundle named {bundle.name!r} already exists", param="name") from None
    return bundle_dict(bundle_id, bundle)


def archive_bundle(services: Services, bundle_id: str) -> dict[str, Any]:
    """Bundles are archived, not deleted: past purchases still name them."""
    bundle, _ = get_bundle(services, bundle_id)
    with services.database.write() as connection:
        connection.execute(update(api_bundles).where(api_bundles.c.id == bundle_id).values(
            active=0, updated_at_us=services.clock.now_us()))
    return bundle_dict(bundle_id, bundle, active=False)


def purchase(services: Services, org_id: str, bundle_id: str, payment_reference: str,
             quantity: int = 1) -> tuple[bool, dict[str, Any]]:
    """Buy a bundle; answer (created, purchase). A repeated reference answers the first purchase
    when it asks for the same bundle and quantity, and is refused otherwise."""
    services.ledger.get_org(org_id)
    earlier = _find_purchase(services, org_id, payment_reference)
    if earlier is not None:
        if earlier["bundle_id"] != bundle_id:
            raise IdempotencyConflict(f"payment_reference {payment_reference!r} was already used "
                                      "for another bundle", param="payment_reference")
        earlier_quantity = _purchased_quantity(services, org_id, earlier)
        if earlier_quantity != quantity:
            raise IdempotencyConflict(f"payment_reference {payment_reference!r} was already used "
                                      f"for a quantity of {earlier_quantity}", param="payment_reference")
        return False, earlier
    bundle, active = get_bundle(services, bundle_id)
    if not active:
        raise Conflict(f"bundle {bundle_id} is archived", param="bundle_id")
    reference_hash = hashlib.sha256(payment_reference.encode()).hexdigest()[:40]
    # A purchase whose grants were made but whose row was not (a crash in between, or a duplicate
    # racing this one) is finished with the same inputs, so that its grants replay: same time.
    paid_key = f"purchase:{reference_hash}:paid"
    now = _granted_at(services, org_id, paid_key) or services.clock.now_us()
    try:
        grant_ids = _grant_purchase(services, org_id, bundle, now, quantity, payment_reference, reference_hash)
    except IdempotencyConflict:
        # A duplicate running at the same moment booked the grants first, at its own time.
        booked_at = _granted_at(services, org_id, paid_key)
        if booked_at is None or booked_at == now:
            raise
        now = booked_at
        grant_ids = _grant_purchase(services, org_id, bundle, now, quantity, payment_reference, reference_hash)
    record = {"id": new_id("pur"), "org_id": org_id, "bundle_id": bundle_id,
              "payment_reference": payment_reference, "price": bundle.price * quantity,
              "currency": bundle.currency, "grant_ids": orjson.dumps(grant_ids).decode(),
              "created_at_us": now}
    try:
        with services.database.write() as connection:
            connection.execute(insert(api_purchases).values(**record))
    except IntegrityError:  # a concurrent duplicate booked the purchase row first
        pass
    found = _find_purchase(services, org_id, payment_reference)
    assert found is not None
    return True, found


def _grant_purchase(services: Services, org_id: str, bundle: Bundle, now: int, quantity: int,
                    payment_reference: str, reference_hash: str) -> list[str]:
    specs = purchase_grants(bundle, now, quantity=quantity, reference=payment_reference)
    return [services.ledger.grant(org_id, idempotency_key=f"purchase:{reference_hash}:{part}",
                                  **spec.ledger_kwargs())["grant_id"]
            for part, spec in zip(("paid", "bonus"), specs.grants, strict=False)]


def _granted_at(services: Services, org_id: str, idempotency_key: str) -> int | None:
    """When the grant booked under ``idempotency_key`` took effect, if one was booked."""
    with services.database.read() as connection:
        replay = ledger_store.find_replays(connection, [(org_id, idempotency_key)]).get((org_id, idempotency_key))
    if replay is None:
        return None
    grant_id = orjson.loads(replay.result).get("grant_id")
    return services.ledger.get_grant(org_id, grant_id).effective_at_us if grant_id else None


def list_purchases(services: Services, org_id: str) -> list[dict[str, Any]]:
    with services.database.read() as connection:
        services.ledger.get_org(org_id, connection=connection)
        rows = connection.execute(select(api_purchases).where(api_purchases.c.org_id == org_id)
                                  .order_by(api_purchases.c.created_at_us, api_purchases.c.id)).all()
    return [_purchase_dict(row) for row in rows]


def _find_purchase(services: Services, org_id: str, reference: str) -> dict[str, Any] | None:
    with services.database.read() as connection:
        row = connection.execute(select(api_purchases).where(
            (api_purchases.c.org_id == org_id) & (api_purchases.c.payment_reference == reference))).first()
    return _purchase_dict(row) if row is not None else None


def _purchased_quantity(services: Services, org_id: str, found: dict[str, Any]) -> int:
    """The quantity a purchase was made for. The purchase row does not keep it, but its paid
    grant (always the first) carries it in the metadata :func:`purchase_grants` writes."""
    paid = services.ledger.get_grant(org_id, found["grant_ids"][0])
    quantity = orjson.loads(paid.metadata).get("quantity", 1) if paid.metadata else 1
    return int(quantity)


def _purchase_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "org_id": row.org_id, "bundle_id": row.bundle_id,
            "payment_reference": row.payment_reference, "price": format_amount(row.price),
            "currency": row.currency, "grant_ids": orjson.loads(row.grant_ids),
            "created_at": iso(row.created_at_us)}
