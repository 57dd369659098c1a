"""The pricing chapter of ``creditgate demo``: buy a bundle, price usage, explain it, compare.

``creditgate.cli.demo`` calls :func:`run_chapter` after the ledger story. Everything comes from
the packaged sample catalog (:mod:`creditgate.pricing.samples`), priced at the demo clock's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.panel import Panel

from creditgate.ledger.credits import format_amount
from creditgate.pricing.bundles import purchase_grants
from creditgate.pricing.compare import compare
from creditgate.pricing.samples import (
    sample_bundles,
    sample_engine,
    sample_price_sheet,
    sample_workload,
)

if TYPE_CHECKING:
    from creditgate.bootstrap import Services

DEMO_BUNDLE: Final = "growth"
DEMO_MODEL: Final = "gemini-1.5-pro"
# A long prompt, so that the explained charge shows a long-context tier.
DEMO_USAGE: Final = {"input_tokens": 150_000, "cached_input_tokens": 20_000, "output_tokens": 2_000}
_console = Console()


def run_chapter(services: Services, org_id: str, options: Mapping[str, Any]) -> None:
    console = options.get("console") or _console
    console.print(Panel.fit("creditgate demo — pricing", style="bold"))
    now = services.clock.now_us()
    engine = sample_engine(services.clock)
    # Later chapters (API, gateway) price with the sample card unless something else is set up.
    services.extras.setdefault("pricing", engine)

    bundle = next(b for b in sample_bundles() if b.name == DEMO_BUNDLE)
    purchase = purchase_grants(bundle, now, reference="demo-order-1")
    for grant in purchase.grants:
        services.ledger.grant(org_id, **grant.ledger_kwargs(),
                              idempotency_key=f"demo-bundle-{bundle.name}-{grant.kind}")
    bonus = purchase.bonus.amount if purchase.bonus is not None else 0
    console.print(
        f"Bought bundle [bold]{bundle.name}[/bold] for {format_amount(bundle.price)} "
        f"{bundle.currency}: a grant of {format_amount(purchase.paid.amount)} paid credits (cost "
        f"basis {format_amount(purchase.paid.cost_basis)} {bundle.currency}) and one of "
        f"{format_amount(bonus)} bonus credits (cost basis 0), valid {bundle.validity_days} days, "
        f"rollover {bundle.rollover.describe()}.")

    charge = engine.quote(DEMO_MODEL, DEMO_USAGE, now)
    services.ledger.debit(org_id, charge.credits, scope="inference", subjects=(DEMO_MODEL,),
                          ref=f"demo {DEMO_MODEL} call", idempotency_key="demo-pricing-charge")
    console.print(f"Priced one {DEMO_MODEL} call on the sample card and debited "
                  f"{format_amount(charge.credits)} credits. The charge, explained:")
    console.print(engine.explain(DEMO_MODEL, DEMO_USAGE, now).render(), markup=False,
                  highlight=False)

    result = compare(sample_price_sheet(), sample_workload(), bundles=sample_bundles())
    console.print(f"Provider comparison for the sample workload {result.workload.name!r} "
                  f"(per {result.workload.period_days} days):")
    for rank, total in enumerate(result.providers[:3], start=1):
        models = ", ".join(f"{choice.family}: {choice.model}" for choice in total.choices)
        missing = f" (no {', '.join(total.missing)})" if total.missing else ""
        console.print(f"  {rank}. {total.provider:<10} {format_amount(total.credits):>10} credits"
                      f"  {models}{missing}")
    if result.bundles:
        best = result.bundles[0].to_dict()
        console.print(f"Best bundle at that burn rate: {best['bundle']}, "
                      f"{best['cost_per_used_credit']} {best['currency']} per credit used "
                      f"({best['expired_credits']} credits would expire unused).")
