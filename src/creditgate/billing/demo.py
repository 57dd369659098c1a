"""The billing part of ``creditgate demo``: two periods pass, a grant expires, another rolls over
under a cap, and the signed statement is produced and verified.

Call :func:`run_billing_demo` with services built on a :class:`creditgate.clock.ManualClock`.
"""

from __future__ import annotations

from typing import Any

from creditgate.billing.service import Billing
from creditgate.clock import ManualClock
from creditgate.ledger.credits import format_amount, parse_amount

MICROS_PER_DAY = 86_400 * 1_000_000


def run_billing_demo(billing: Billing, clock: ManualClock, *, org_name: str = "demo-billing") -> dict[str, Any]:
    """Returns the two signed statements, their verification, and what expired and rolled."""
    ledger = billing.ledger
    org = ledger.create_org(org_name, idempotency_key=f"demo-billing:{org_name}")
    billing.set_cycle(org.id, kind="days", length_days=30, timezone="UTC")
    period = billing.current_period(org.id)
    assert period is not None
    # A promotional grant that expires with the period (no rollover): it becomes breakage.
    expiring = ledger.grant(org.id, parse_amount("40"), kind="promotional", expires_at_us=period.end_us,
                            rollover={"policy": "none"})
    # A purchase whose unused part rolls over, capped at 25% of the 200 granted (= 50 credits).
    rolling = ledger.grant(org.id, parse_amount("200"), kind="purchase", cost_basis=parse_amount("20"),
                           expires_at_us=period.end_us,
                           rollover={"policy": "capped", "cap_percent": "25", "expires_after_periods": 1})
    hold = ledger.reserve(org.id, parse_amount("30"), model="demo-model",
                          metadata={"project_id": "demo", "purpose": "chat"})
    ledger.post(org.id, hold["hold_id"], parse_amount("25"))
    clock.set(period.end_us + 60 * 1_000_000)
    first = billing.close_org(org.id)
    hold = ledger.reserve(org.id, parse_amount("10"), model="demo-model", metadata={"project_id": "demo"})
    ledger.post(org.id, hold["hold_id"], parse_amount("10"))
    second_period = billing.current_period(org.id)
    assert second_period is not None
    clock.set(second_period.end_us + 60 * 1_000_000)
    second = billing.close_org(org.id)
    documents = [billing.statement(org.id, outcome.statement_id) for outcome in first + second]
    verifications = [billing.verify_statement(document) for document in documents]
    return {
        "org_id": org.id,
        "expired_grant": expiring["grant_id"],
        "rolled_grant": rolling["grant_id"],
        "rolled": [{"grant_id": g, "amount": format_amount(a)} for o in first for g, a in o.rolled],
        "statements": documents,
        "verified": [{"ok": v.ok, "reason": v.reason, "key_id": v.key_id} for v in verifications],
        "reconcile_problems": billing.reconcile(org.id),
    }


def run_chapter(services: Any, org_id: str, options: dict[str, Any]) -> None:
    """The ``creditgate demo`` chapter (see ``creditgate.cli.demo.CHAPTERS``)."""
    from creditgate.cli.common import console

    clock = options.get("clock")
    billing = services.extras.get("billing")
    if not isinstance(clock, ManualClock) or billing is None:
        console.print("Billing chapter skipped: it needs the demo's manual clock.")
        return
    console.rule("Billing: two periods pass")
    result = run_billing_demo(billing, clock)
    for document, verification in zip(result["statements"], result["verified"], strict=True):
        statement = document["statement"]
        console.print(
            f"Statement {statement['statement_id']} for {statement['period']['label']}: opening "
            f"{statement['opening_balance']}, in {statement['credits_in']['total']} (paid "
            f"{statement['credits_in']['paid']}, free {statement['credits_in']['free']}), usage "
            f"{statement['usage']['total']}, breakage {statement['breakage']['total']} (cost basis "
            f"{statement['breakage']['cost_basis']}), rolled over out {statement['rollovers']['out']} / in "
            f"{statement['rollovers']['in']}, closing {statement['closing_balance']}")
        console.print(f"  signed {document['signature']['key_id']}: {document['signature']['value'][:32]}…  "
                      f"verify: {'[green]valid[/green]' if verification['ok'] else '[red]INVALID[/red]'} "
                      f"({verification['reason']})")
    console.print(f"Expired (breakage): grant {result['expired_grant']}; rolled over under a 25% cap: "
                  + ", ".join(f"{item['amount']} from {item['grant_id']}" for item in result["rolled"]))
