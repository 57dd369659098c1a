"""``creditgate forecast ORG``: burn rate, depletion date with a range, projected waste per grant,
and the recommended purchase (see docs/tracking.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from creditgate.cli.common import DB_OPTION, JSON_OPTION, console, print_json, services


def forecast(
    org: Annotated[str, typer.Argument(help="Organization id or name")],
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Forecast an organization's credits: when they run out, what expires unused, what to buy."""
    from creditgate.tracking.forecasting import org_forecast

    with services(db) as built:
        found = built.ledger.find_org(org)
        result = org_forecast(built, found.id).to_dict()
    if as_json:
        print_json(result)
        return
    burn, depletion, advice = result["burn_rate"], result["depletion"], result["recommendation"]
    console.print(f"[bold]{found.name}[/bold] ({found.id}) as of {result['as_of']}")
    console.print(f"Available {result['available']}, pending {result['pending']}")
    console.print(f"Burn rate {burn['per_day']}/day (range {burn['low_per_day']}–{burn['high_per_day']}, "
                  f"median of {burn['days_observed']} days; last hour {burn['last_hour']})")
    if depletion["expected"]:
        console.print(f"Runs out {depletion['expected']} (in {depletion['days_left']} days; "
                      f"earliest {depletion['earliest']}, latest {depletion['latest'] or 'beyond the horizon'})")
    else:
        console.print(f"Does not run out before {depletion['horizon']} at this rate")
    table = Table(title="Grants")
    for column in ("grant", "kind", "free", "expires", "projected waste"):
        table.add_column(column, justify="right" if column in ("free", "projected waste") else "left")
    for grant in result["grants"]:
        table.add_row(grant["id"], grant["kind"], grant["free"], grant["expires_at"] or "never",
                      f"{grant['projected_waste']} ({grant['projected_waste_money']} {grant['currency']})")
    console.print(table)
    bundle = advice["bundle"]
    if bundle:
        console.print(f"Recommended through {advice['through']}: {bundle['quantity']} × {bundle['name']} "
                      f"for {bundle['price']} {bundle['currency']} (projected waste {bundle['projected_waste']})")
    else:
        console.print(f"Recommended through {advice['through']}: nothing — {advice['reason']}")


def register(root: typer.Typer) -> None:
    """Mount ``forecast`` as a top-level command of ``creditgate``."""
    root.command("forecast")(forecast)
