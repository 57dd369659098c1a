"""CLI commands for organizations, projects, grants, balances, holds, the journal and verify."""

from __future__ import annotations

from typing import Any, get_args

import typer
from rich.table import Table

from creditgate.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    amount,
    console,
    fail,
    instant,
    print_json,
    services,
)
from creditgate.clock import iso
from creditgate.ledger.credits import format_amount
from creditgate.ledger.records import Grant, HoldStatus
from creditgate.ledger.verify import verify as verify_ledger
from creditgate.storage.migrate import current_revision, upgrade

db_app = typer.Typer(help="Database schema", no_args_is_help=True)
orgs_app = typer.Typer(help="Organizations", no_args_is_help=True)
projects_app = typer.Typer(help="Projects inside an organization", no_args_is_help=True)
grants_app = typer.Typer(help="Credit grants", no_args_is_help=True)
holds_app = typer.Typer(help="Two-phase holds", no_args_is_help=True)
HOLD_STATUSES: tuple[str, ...] = get_args(HoldStatus)


def grant_json(grant: Grant) -> dict[str, Any]:
    return {"id": grant.id, "kind": grant.kind, "scope": grant.scope, "priority": grant.priority,
            "amount": format_amount(grant.amount), "remaining": format_amount(grant.remaining),
            "held": format_amount(grant.held), "available": format_amount(grant.free),
            "status": grant.status, "effective_at": iso(grant.effective_at_us),
            "expires_at": iso(grant.expires_at_us), "cost_basis": format_amount(grant.cost_basis),
            "currency": grant.currency, "allow": sorted(grant.allow) if grant.allow else None}


@db_app.command("upgrade")
def db_upgrade(db: str | None = DB_OPTION) -> None:
    """Create or migrate the schema to the newest version."""
    with services(db) as built:
        upgrade(built.database)
        typer.echo(f"schema at revision {current_revision(built.database)}")


@orgs_app.command("create")
def orgs_create(name: str, overdraft: str = typer.Option("0", help="Overdraft (soft) limit in credits"),
                idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
                db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        org = built.ledger.create_org(name, overdraft_limit=amount(overdraft, "overdraft", allow_zero=True),
                                      idempotency_key=idempotency_key)
        billing = built.extras.get("billing")
        if billing is not None:
            billing.on_org_created(org.id)
        print_json({"id": org.id, "name": org.name}) if as_json else typer.echo(org.id)


@orgs_app.command("list")
def orgs_list(db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        rows = [{"id": org.id, "name": org.name, "overdraft_limit": format_amount(org.overdraft_limit)}
                for org in built.ledger.list_orgs(limit=1000)]
    if as_json:
        return print_json(rows)
    table = Table("id", "name", "overdraft limit", title="Organizations")
    for row in rows:
        table.add_row(row["id"], row["name"], row["overdraft_limit"])
    console.print(table)


@projects_app.command("create")
def projects_create(org: str, name: str, db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        project = built.ledger.create_project(built.ledger.find_org(org).id, name)
    print_json(project) if as_json else typer.echo(project["id"])


@projects_app.command("list")
def projects_list(org: str, db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        rows = built.ledger.list_projects(built.ledger.find_org(org).id)
    if as_json:
        return print_json(rows)
    for row in rows:
        typer.echo(f"{row['id']}  {row['name']}")


@grants_app.command("create")
def grants_create(
    org: str, credits: str = typer.Option(..., help="Credits, e.g. 100 or 12.5"),
    kind: str = typer.Option("purchase"), scope: str = typer.Option("any"),
    priority: int = typer.Option(100), expires_at: str | None = typer.Option(None, help="ISO 8601 with timezone"),
    effective_at: str | None = typer.Option(None), cost_basis: str = typer.Option("0", help="Money paid"),
    currency: str = typer.Option("USD"), allow: list[str] | None = typer.Option(None, help="Allowed model/meter"),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    db: str | None = DB_OPTION, as_json: bool = JSON_OPTION,
) -> None:
    with services(db) as built:
        org_id = built.ledger.find_org(org).id
        result = built.ledger.grant(
            org_id, amount(credits, "credits"), kind=kind, scope=scope, priority=priority,
            expires_at_us=instant(expires_at, "expires_at"), effective_at_us=instant(effective_at, "effective_at"),
            cost_basis=amount(cost_basis, "cost_basis", allow_zero=True), currency=currency,
            allow=allow or None, idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(result["grant_id"])


@grants_app.command("list")
def grants_list(org: str, db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        rows = [grant_json(g) for g in built.ledger.list_grants(built.ledger.find_org(org).id)]
    if as_json:
        return print_json(rows)
    table = Table("id", "kind", "scope", "prio", "remaining", "held", "status", "expires at", title="Grants")
    for row in rows:
        table.add_row(row["id"], row["kind"], row["scope"], str(row["priority"]), row["remaining"],
                      row["held"], row["status"], row["expires_at"] or "never")
    console.print(table)


@grants_app.command("void")
def grants_void(org: str, grant_id: str, idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
                db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        result = built.ledger.void_grant(built.ledger.find_org(org).id, grant_id, idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(f"voided {grant_id}: {format_amount(result['lost'])} forfeited")


def balance(org: str, db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Available and pending credits, and each grant with its expiry."""
    with services(db) as built:
        found = built.ledger.find_org(org)
        result = built.ledger.balance(found.id)
    body: dict[str, Any] = {"org_id": found.id, "available": format_amount(result.available),
                            "pending": format_amount(result.pending), "debt": format_amount(result.debt),
                            "grants": [grant_json(g) for g in result.grants]}
    if as_json:
        return print_json(body)
    console.print(f"[bold]{found.name}[/bold]  available [green]{body['available']}[/green]  "
                  f"pending {body['pending']}  debt {body['debt']}")
    for grant in body["grants"]:
        console.print(f"  {grant['id']}  {grant['kind']:<11} {grant['scope']:<9} remaining {grant['remaining']:>12}"
                      f"  expires {grant['expires_at'] or 'never'}")


@holds_app.command("reserve")
def holds_reserve(org: str, credits: str = typer.Option(...), scope: str = typer.Option("inference"),
                  ttl: int = typer.Option(300, help="Seconds until the hold expires"),
                  model: str | None = typer.Option(None),
                  idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
                  db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        result = built.ledger.reserve(built.ledger.find_org(org).id, amount(credits, "credits"), scope=scope,
                                      ttl_s=ttl, model=model, idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(result["hold_id"])


@holds_app.command("post")
def holds_post(org: str, hold_id: str, actual: str = typer.Option(...),
               idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
               db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        result = built.ledger.post(built.ledger.find_org(org).id, hold_id, amount(actual, "actual", allow_zero=True),
                                   idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(
        f"posted {format_amount(result['posted'])}, released {format_amount(result['released'])}")


@holds_app.command("void")
def holds_void(org: str, hold_id: str, idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
               db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    with services(db) as built:
        result = built.ledger.void(built.ledger.find_org(org).id, hold_id, idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(f"voided, released {format_amount(result['released'])}")


@holds_app.command("list")
def holds_list(org: str, status: str | None = typer.Option(None), db: str | None = DB_OPTION,
               as_json: bool = JSON_OPTION) -> None:
    # An unknown status would match no hold: an empty list that looks like an answer.
    if status is not None and status not in HOLD_STATUSES:
        fail(f"--status must be one of {', '.join(HOLD_STATUSES)}")
    with services(db) as built:
        rows = [{"id": h.id, "amount": format_amount(h.amount), "status": h.status,
                 "posted": format_amount(h.posted), "expires_at": iso(h.expires_at_us)}
                for h in built.ledger.list_holds(built.ledger.find_org(org).id, status=status)]
    if as_json:
        return print_json(rows)
    for row in rows:
        typer.echo(f"{row['id']}  {row['status']:<8} {row['amount']:>12}  posted {row['posted']}")


def debit(org: str, credits: str = typer.Option(...), scope: str = typer.Option("inference"),
          idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
          db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Debit usage metered after the fact (all or nothing)."""
    with services(db) as built:
        result = built.ledger.debit(built.ledger.find_org(org).id, amount(credits, "credits"), scope=scope,
                                    idempotency_key=idempotency_key)
    print_json(result) if as_json else typer.echo(f"debited {format_amount(result['debited'])}")


def journal(org: str, after: int = typer.Option(0, help="Show entries after this sequence number"),
            limit: int = typer.Option(50), db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """The organization's hash-chained journal, oldest first."""
    with services(db) as built:
        rows = built.ledger.journal_page(built.ledger.find_org(org).id, after_seq=after, limit=limit)
    if as_json:
        return print_json(rows)
    for row in rows:
        legs = ", ".join(f"{e['account']} {format_amount(e['amount'])}" for e in row["entries"])
        typer.echo(f"{row['seq']:>6} {iso(row['at_us'])} {row['kind']:<13} {row['hash'][:12]}  {legs}")


def verify(db: str | None = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Recompute the hash chains and re-derive every balance; exit 1 at the first bad entry."""
    with services(db) as built:
        report = verify_ledger(built.database)
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        typer.echo(f"ok: {report.organizations} organizations, {report.transactions} journal entries, "
                   f"{report.grants} grants, {report.holds} holds verified")
    else:
        typer.echo(f"FAILED: {report.problems[0]}", err=True)
    if not report.ok:
        raise typer.Exit(1)


def expire(db: str | None = DB_OPTION) -> None:
    """Book every due expiry: holds past their ttl, grants past their expiry (as breakage)."""
    with services(db) as built:
        typer.echo(f"expired {built.ledger.expire_due()} holds and grants")


__all__ = [
    "balance",
    "db_app",
    "debit",
    "expire",
    "fail",
    "grants_app",
    "holds_app",
    "journal",
    "orgs_app",
    "projects_app",
    "verify",
]
