"""``creditgate billing``: cycles, closing, allowances, trials, auto top-up, invoices, training.

Every command validates its whole input before it writes; a bad input exits non-zero with one
line on stderr (the root's error mapping) and leaves the database as it was.
"""

from __future__ import annotations

from typing import Any

import orjson
import typer

from creditgate.billing.service import Billing
from creditgate.billing.topup import INVOICE_STATUSES
from creditgate.cli.common import DB_OPTION, JSON_OPTION, amount, instant, print_json, services
from creditgate.errors import InvalidInput

app = typer.Typer(help="Billing cycles, period close, allowances, trials, top-ups, invoices, training",
                  no_args_is_help=True)
cycle_app = typer.Typer(help="Billing cycles", no_args_is_help=True)
allowance_app = typer.Typer(help="Recurring allowances", no_args_is_help=True)
trial_app = typer.Typer(help="Trial credits for new organizations", no_args_is_help=True)
topup_app = typer.Typer(help="Auto top-up rules", no_args_is_help=True)
invoice_app = typer.Typer(help="Invoices and payment confirmation", no_args_is_help=True)
training_app = typer.Typer(help="Training jobs", no_args_is_help=True)
for _name, _sub in (("cycle", cycle_app), ("allowance", allowance_app), ("trial", trial_app),
                    ("topup", topup_app), ("invoice", invoice_app), ("training", training_app)):
    app.add_typer(_sub, name=_name)


ALLOW_OPTION = typer.Option(None, help="Models the credits may pay for (repeat)")


def billing_of(built: Any) -> Billing:
    return built.extras["billing"]  # type: ignore[no-any-return]


def org_id_of(built: Any, org: str) -> str:
    return str(built.ledger.find_org(org).id)


def rollover_option(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidInput("--rollover must be JSON, e.g. '{\"policy\": \"capped\", \"cap_percent\": \"25\"}'",
                           param="rollover") from None
    if not isinstance(value, dict):
        raise InvalidInput("--rollover must be a JSON object", param="rollover")
    return value


def show(value: Any) -> None:
    print_json(value)


# ---------------------------------------------------------------------- cycles
@cycle_app.command("show")
def cycle_show(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        billing = billing_of(built)
        org_id = org_id_of(built, org)
        show({**billing.cycle(org_id).to_dict(), "periods": billing.periods(org_id, count_max=6)})


@cycle_app.command("set")
def cycle_set(org: str, kind: str = typer.Option("monthly", help="monthly or days"),
              anchor_day: int = typer.Option(1, help="Monthly: day of month a period starts"),
              length_days: int = typer.Option(30, help="Days: length of a period"),
              timezone: str | None = typer.Option(None, help="IANA timezone (default: the org's)"),
              late_grace_s: int | None = typer.Option(None, help="Late usage grace window in seconds"),
              late_after_grace: str | None = typer.Option(None, help="book_current or reject"),
              db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        cycle = billing_of(built).set_cycle(org_id_of(built, org), kind=kind, timezone=timezone,
                                            anchor_day=anchor_day, length_days=length_days,
                                            late_grace_s=late_grace_s, late_after_grace=late_after_grace)
        show(cycle.to_dict())


# ---------------------------------------------------------------------- closing
@app.command("close")
def close(org: str | None = typer.Option(None, help="Only this organization"),
          period_start: str | None = typer.Option(None, help="Close through the period starting at this ISO time"),
          db: str | None = DB_OPTION) -> None:
    """Close every ended period (expiry, rollover, signed statement); safe to run from cron."""
    with services(db) as built:
        billing = billing_of(built)
        if period_start is not None and org is None:
            raise InvalidInput("--period-start needs --org", param="period_start")
        if org is None:
            show(billing.close_due().to_dict())
            return
        outcomes = billing.close_org(org_id_of(built, org), through_start_us=instant(period_start, "period_start"))
        show({"closed": [outcome.to_dict() for outcome in outcomes]})


@app.command("periods")
def periods(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).periods(org_id_of(built, org)))


@app.command("late-usage")
def late_usage(org: str, at: str = typer.Option(..., help="Event time, ISO 8601"), db: str | None = DB_OPTION) -> None:
    """Say what the late-usage policy does with an event at ``--at``."""
    with services(db) as built:
        decision = billing_of(built).late_usage(org_id_of(built, org), instant(at, "at") or 0)
        show({"accept": decision.accept, "reason": decision.reason, "late": decision.late,
              "message": decision.message})


# ---------------------------------------------------------------------- allowances
@allowance_app.command("add")
def allowance_add(org: str, name: str, credits: str = typer.Option(..., help="Credits per period"),
                  scope: str = typer.Option("any"), allow: list[str] | None = ALLOW_OPTION,
                  priority: int = typer.Option(100),
                  expires_after_periods: int = typer.Option(1, help="0 = never expires"),
                  rollover: str | None = typer.Option(None, help="Rollover policy JSON"),
                  db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        created = billing_of(built).allowances.create(
            org_id_of(built, org), name, amount(credits, "credits"), scope=scope, allow=allow or None,
            priority=priority, expires_after_periods=expires_after_periods or None,
            rollover=rollover_option(rollover))
        show(created.to_dict())


@allowance_app.command("list")
def allowance_list(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show([item.to_dict() for item in billing_of(built).allowances.list(org_id_of(built, org))])


@allowance_app.command("disable")
def allowance_disable(org: str, allowance_id: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).allowances.set_active(org_id_of(built, org), allowance_id, False).to_dict())


# ---------------------------------------------------------------------- trials
@trial_app.command("set")
def trial_set(credits: str = typer.Option(..., help="Trial credits (0 turns trials off)"),
              days: int = typer.Option(14, help="Days until the trial credits expire"),
              scope: str = typer.Option("inference"), allow: list[str] | None = ALLOW_OPTION,
              db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).trials.configure(amount(credits, "credits", allow_zero=True), days,
                                                scope=scope, allow=allow or None))


@trial_app.command("show")
def trial_show(db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).trials.config())


@trial_app.command("grant")
def trial_grant(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show({"grant_id": billing_of(built).trials.grant(org_id_of(built, org))})


# ---------------------------------------------------------------------- top-ups and invoices
@topup_app.command("set")
def topup_set(org: str, threshold: str = typer.Option(...), credits: str = typer.Option(...),
              price: str = typer.Option(...), currency: str = typer.Option("USD"),
              cooldown_s: int = typer.Option(3600), max_per_period: int = typer.Option(3),
              disabled: bool = typer.Option(False, "--disabled"), db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).topups.set_rule(
            org_id_of(built, org), threshold=amount(threshold, "threshold", allow_zero=True),
            credits=amount(credits, "credits"), price=amount(price, "price", allow_zero=True),
            currency=currency, cooldown_s=cooldown_s, max_per_period=max_per_period, enabled=not disabled))


@topup_app.command("show")
def topup_show(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).topups.get_rule(org_id_of(built, org)))


@topup_app.command("check")
def topup_check(org: str, db: str | None = DB_OPTION) -> None:
    """Open a top-up invoice now if the rule says one is due."""
    with services(db) as built:
        show({"invoice": billing_of(built).topups.check(org_id_of(built, org))})


@invoice_app.command("list")
def invoice_list(org: str, status: str | None = typer.Option(None, help="open, paid or void"),
                 db: str | None = DB_OPTION) -> None:
    if status is not None and status not in INVOICE_STATUSES:
        raise InvalidInput(f"--status must be one of {', '.join(INVOICE_STATUSES)}", param="status")
    with services(db) as built:
        show(billing_of(built).topups.list_invoices(org_id_of(built, org), status=status))


@invoice_app.command("confirm")
def invoice_confirm(org: str, invoice_id: str, provider_ref: str | None = typer.Option(None),
                    db: str | None = DB_OPTION) -> None:
    """Confirm an invoice's payment: its credits are granted (once)."""
    with services(db) as built:
        show(billing_of(built).topups.confirm_payment(org_id_of(built, org), invoice_id,
                                                      provider_ref=provider_ref))


# ---------------------------------------------------------------------- training
@training_app.command("start")
def training_start(org: str, model: str = typer.Option(...), dataset: str = typer.Option(...),
                   credits_per_gpu_hour: str = typer.Option(...), project: str | None = typer.Option(None),
                   db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).training.start(
            org_id_of(built, org), model=model, dataset_ref=dataset,
            credits_per_gpu_hour=amount(credits_per_gpu_hour, "credits_per_gpu_hour"), project_id=project))


@training_app.command("report")
def training_report(org: str, job_id: str, gpu_hours: str = typer.Option(..., help="Cumulative GPU-hours"),
                    db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        result = billing_of(built).training.report(org_id_of(built, org), job_id,
                                                   amount(gpu_hours, "gpu_hours", allow_zero=True))
        show(result)
        if result["stop"]:
            typer.echo("stop: the job is out of training credits", err=True)


@training_app.command("list")
def training_list(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).training.list(org_id_of(built, org)))


@training_app.command("complete")
def training_complete(org: str, job_id: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        show(billing_of(built).training.complete(org_id_of(built, org), job_id))
