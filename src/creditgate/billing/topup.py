"""Auto top-up and invoices.

When an organization's available balance falls below its rule's threshold, :meth:`TopUps.check`
opens an invoice for the rule's bundle through a :class:`PaymentProvider`. The default provider
only records the invoice: its credits are granted when the payment is confirmed
(:meth:`TopUps.confirm_payment`, from the API or CLI). A provider that charges a card on file
may answer ``paid`` at once, and the credits are granted in the same call.

No runaway loops and no double top-ups:
- the decision runs in one write transaction that locks the rule (SQLite ``BEGIN IMMEDIATE``,
  PostgreSQL ``SELECT ... FOR UPDATE``), so concurrent checks are serialized;
- while a top-up invoice is open no other top-up starts;
- a cooldown after each top-up, and at most ``max_per_period`` top-ups per billing period;
- each top-up has the idempotency key ``topup:<period start>:<n>`` (unique per organization),
  and its grant the ledger key ``invoice:<id>``, so a retried confirmation grants once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

from sqlalchemy import func, insert, select, update

from creditgate.billing.cycles import load_cycle
from creditgate.billing.periods import period_containing
from creditgate.clock import iso
from creditgate.errors import Conflict, InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.credits import check_micros, format_amount
from creditgate.storage.tables_billing import billing_invoices, billing_topup_rules
from creditgate.text import CONTROL_CHARACTERS

COOLDOWN_S_MAX: Final = 30 * 86_400
TOPUPS_PER_PERIOD_MAX: Final = 100
INVOICE_LIST_MAX: Final = 1000
INVOICE_STATUSES: Final = ("open", "paid", "void")
MICROS_PER_SECOND: Final = 1_000_000
PROVIDER_REF_LENGTH_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class PaymentResult:
    status: str  # "open" (awaiting confirmation) or "paid"
    provider_ref: str | None = None


class PaymentProvider(Protocol):
    name: str

    def charge(self, invoice: dict[str, Any]) -> PaymentResult: ...


class InvoiceProvider:
    """The default: record the invoice; someone confirms the payment later."""

    name = "invoice"

    def charge(self, invoice: dict[str, Any]) -> PaymentResult:
        return PaymentResult("open")


def invoice_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "org_id": row.org_id, "reason": row.reason, "credits": format_amount(row.credits),
            "price": format_amount(row.price), "currency": row.currency, "status": row.status,
            "idempotency_key": row.idempotency_key, "provider": row.provider,
            "provider_ref": row.provider_ref, "grant_id": row.grant_id,
            "created_at": iso(row.created_at_us), "paid_at": iso(row.paid_at_us)}


class TopUps:
    def __init__(self, database: Any, ledger: Any, clock: Any, provider: PaymentProvider | None = None) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock
        self.provider = provider or InvoiceProvider()

    # ------------------------------------------------------------------ rules
    def set_rule(self, org_id: str, *, threshold: int, credits: int, price: int, currency: str = "USD",
                 cooldown_s: int = 3600, max_per_period: int = 3, enabled: bool = True,
                 bundle: str | None = None) -> dict[str, Any]:
        check_micros(threshold, field="threshold")
        check_micros(credits, field="credits", allow_zero=False)
        check_micros(price, field="price")
        if not isinstance(cooldown_s, int) or not 0 <= cooldown_s <= COOLDOWN_S_MAX:
            raise InvalidInput(f"cooldown must be from 0 to {COOLDOWN_S_MAX} seconds", param="cooldown_s")
        if not isinstance(max_per_period, int) or not 1 <= max_per_period <= TOPUPS_PER_PERIOD_MAX:
            raise InvalidInput(f"max_per_period must be from 1 to {TOPUPS_PER_PERIOD_MAX}", param="max_per_period")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
            raise InvalidInput("currency must be a three-letter ISO 4217 code such as USD", param="currency")
        values = {"threshold": threshold, "credits": credits, "price": price, "currency": currency,
                  "cooldown_s": cooldown_s, "max_per_period": max_per_period, "enabled": enabled,
                  "bundle": bundle, "updated_at_us": self.clock.now_us()}
        with self.database.write() as connection:
            self.ledger.get_org(org_id, connection=connection)
            if not connection.execute(update(billing_topup_rules).where(
                    billing_topup_rules.c.org_id == org_id).values(**values)).rowcount:
                connection.execute(insert(billing_topup_rules).values(org_id=org_id, **values))
        return self.get_rule(org_id)

    def get_rule(self, org_id: str) -> dict[str, Any]:
        with self.database.read() as connection:
            row = connection.execute(select(billing_topup_rules).where(billing_topup_rules.c.org_id == org_id)).first()
        if row is None:
            raise NotFound(f"organization {org_id} has no auto top-up rule", param="org_id")
        return {"org_id": org_id, "threshold": format_amount(row.threshold), "credits": format_amount(row.credits),
                "price": format_amount(row.price), "currency": row.currency, "bundle": row.bundle,
                "cooldown_s": row.cooldown_s, "max_per_period": row.max_per_period,
                "enabled": bool(row.enabled), "last_topup_at": iso(row.last_topup_at_us)}

    # ------------------------------------------------------------------ the check
    def check(self, org_id: str) -> dict[str, Any] | None:
        """Open a top-up invoice when one is due; None when not (see the module docstring)."""
        if self.ledger.balance(org_id).available >= self._threshold(org_id):
            return None
        now = self.clock.now_us()
        with self.database.write() as connection:
            query = select(billing_topup_rules).where(billing_topup_rules.c.org_id == org_id)
            rule = connection.execute(query if self.database.is_sqlite else query.with_for_update()).first()
            if rule is None or not rule.enabled:
                return None
            if rule.last_topup_at_us is not None and now < rule.last_topup_at_us + rule.cooldown_s * MICROS_PER_SECOND:
                return None
            if connection.execute(select(billing_invoices.c.id).where(
                    (billing_invoices.c.org_id == org_id) & (billing_invoices.c.reason == "topup")
                    & (billing_invoices.c.status == "open"))).first():
                return None
            period = period_containing(load_cycle(connection, org_id).spec, now)
            period_start = period.start_us if period else 0
            count = connection.execute(select(func.count()).select_from(billing_invoices).where(
                (billing_invoices.c.org_id == org_id) & (billing_invoices.c.reason == "topup")
                & (billing_invoices.c.period_start_us == period_start)
                & (billing_invoices.c.status != "void"))).scalar_one()
            if count >= rule.max_per_period:
                return None
            invoice_id = new_id("inv")
            connection.execute(insert(billing_invoices).values(
                id=invoice_id, org_id=org_id, reason="topup", credits=rule.credits, price=rule.price,
                currency=rule.currency, status="open", idempotency_key=f"topup:{period_start}:{count + 1}",
                provider=self.provider.name, period_start_us=period_start, created_at_us=now))
            connection.execute(update(billing_topup_rules).where(billing_topup_rules.c.org_id == org_id)
                               .values(last_topup_at_us=now))
        invoice = self.get_invoice(org_id, invoice_id)
        payment = self.provider.charge(invoice)
        if payment.status == "paid":
            return self.confirm_payment(org_id, invoice_id, provider_ref=payment.provider_ref)
        return invoice

    def _threshold(self, org_id: str) -> int:
        with self.database.read() as connection:
            row = connection.execute(select(billing_topup_rules.c.threshold, billing_topup_rules.c.enabled)
                                     .where(billing_topup_rules.c.org_id == org_id)).first()
        return int(row.threshold) if row is not None and row.enabled else -(2**62)

    # ------------------------------------------------------------------ invoices
    def create_invoice(self, org_id: str, *, credits: int, price: int, currency: str = "USD",
                       idempotency_key: str) -> dict[str, Any]:
        """A manual purchase awaiting payment (the same confirmation path as a top-up)."""
        check_micros(credits, field="credits", allow_zero=False)
        check_micros(price, field="price")
        with self.database.write() as connection:
            self.ledger.get_org(org_id, connection=connection)
            existing = connection.execute(select(billing_invoices).where(
                (billing_invoices.c.org_id == org_id) & (billing_invoices.c.idempotency_key == idempotency_key))).first()
            if existing is not None:
                if (existing.credits, existing.price, existing.currency) != (credits, price, currency):
                    raise Conflict("idempotency key already used for a different invoice", param="idempotency_key")
                return invoice_dict(existing)
            invoice_id = new_id("inv")
            connection.execute(insert(billing_invoices).values(
                id=invoice_id, org_id=org_id, reason="purchase", credits=credits, price=price,
                currency=currency, status="open", idempotency_key=idempotency_key,
                provider=self.provider.name, created_at_us=self.clock.now_us()))
        return self.get_invoice(org_id, invoice_id)

    def get_invoice(self, org_id: str, invoice_id: str) -> dict[str, Any]:
        with self.database.read() as connection:
            row = connection.execute(select(billing_invoices).where(
                (billing_invoices.c.id == invoice_id) & (billing_invoices.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"invoice {invoice_id} not found", param="invoice_id")
        return invoice_dict(row)

    def list_invoices(self, org_id: str, *, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if status is not None and status not in INVOICE_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(INVOICE_STATUSES)}", param="status")
        query = select(billing_invoices).where(billing_invoices.c.org_id == org_id)
        if status:
            query = query.where(billing_invoices.c.status == status)
        query = query.order_by(billing_invoices.c.created_at_us.desc()).limit(max(1, min(limit, INVOICE_LIST_MAX)))
        with self.database.read() as connection:
            return [invoice_dict(row) for row in connection.execute(query)]

    def confirm_payment(self, org_id: str, invoice_id: str, *, provider_ref: str | None = None) -> dict[str, Any]:
        """Mark an invoice paid and grant its credits (once, even when confirmed twice).

        The grant and the invoice update are two transactions (the ledger commits its own), so
        everything the update could refuse is checked before the grant; should the update still
        fail, the grant's key (``invoice:<id>``) makes a retried confirmation finish it without
        granting twice."""
        if provider_ref is not None and (
                not isinstance(provider_ref, str) or len(provider_ref) > PROVIDER_REF_LENGTH_MAX
                or CONTROL_CHARACTERS.search(provider_ref)):
            raise InvalidInput(f"provider_ref must be up to {PROVIDER_REF_LENGTH_MAX} characters without "
                               "control characters", param="provider_ref")
        invoice = self.get_invoice(org_id, invoice_id)
        if invoice["status"] == "void":
            raise Conflict(f"invoice {invoice_id} is void", param="invoice_id")
        if invoice["status"] == "paid":
            return invoice
        with self.database.read() as connection:
            row = connection.execute(select(billing_invoices).where(billing_invoices.c.id == invoice_id)).one()
        grant = self.ledger.grant(org_id, row.credits, kind="purchase", scope="any", cost_basis=row.price,
                                  currency=row.currency, metadata={"invoice_id": invoice_id},
                                  # Fixed inputs, so that a retried confirmation replays the grant.
                                  effective_at_us=row.created_at_us,
                                  idempotency_key=f"invoice:{invoice_id}")
        with self.database.write() as connection:
            changed = connection.execute(update(billing_invoices).where(
                (billing_invoices.c.id == invoice_id) & (billing_invoices.c.status == "open"))
                .values(status="paid", paid_at_us=self.clock.now_us(), grant_id=grant["grant_id"],
                        provider_ref=provider_ref)).rowcount
        if not changed and self.get_invoice(org_id, invoice_id)["status"] == "void":
            # Voided between the check above and this update (another request): the credits
            # granted meanwhile must not outlive their invoice.
            self.ledger.void_grant(org_id, grant["grant_id"], idempotency_key=f"invoice-void:{invoice_id}")
            raise Conflict(f"invoice {invoice_id} was voided while it was being confirmed", param="invoice_id")
        return self.get_invoice(org_id, invoice_id)

    def void_invoice(self, org_id: str, invoice_id: str) -> dict[str, Any]:
        with self.database.write() as connection:
            changed = connection.execute(update(billing_invoices).where(
                (billing_invoices.c.id == invoice_id) & (billing_invoices.c.org_id == org_id)
                & (billing_invoices.c.status == "open")).values(status="void")).rowcount
        if not changed:
            raise Conflict(f"invoice {invoice_id} is not open", param="invoice_id")
        return self.get_invoice(org_id, invoice_id)
