"""``creditgate demo``: a short story on an embedded SQLite file that shows each part working."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.panel import Panel

from creditgate.bootstrap import bootstrap
from creditgate.cli.common import console
from creditgate.clock import ManualClock
from creditgate.errors import InsufficientCredits
from creditgate.ledger.credits import format_amount, parse_amount
from creditgate.ledger.verify import verify

DAY_US = 86_400 * 1_000_000
# Later parts add chapters to the story; each is a module with run_chapter(services, org_id, options).
CHAPTERS = ("creditgate.pricing.demo", "creditgate.api.demo", "creditgate.billing.demo",
            "creditgate.tracking.demo")


def _credits(text: str) -> int:
    return parse_amount(text)


def demo(
    db_path: Path = typer.Option(Path("creditgate-demo.db"), "--db-path", help="SQLite file (recreated)"),
    upstream: str | None = typer.Option(None, "--upstream", help="An OpenAI-compatible upstream, e.g. a local Ollama"),
    upstream_model: str = typer.Option("llama3.2", "--upstream-model", help="The model to ask the upstream for"),
    serve: bool = typer.Option(False, "--serve", help="Keep the server running after the story"),
) -> None:
    """Run the creditgate story on an embedded SQLite file: no server needed."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    clock = ManualClock()
    services = bootstrap(f"sqlite:///{db_path}", clock=clock)
    ledger = services.ledger
    try:
        console.print(Panel.fit("creditgate demo — ledger", style="bold"))
        org = ledger.create_org("Acme AI", idempotency_key="demo-org")
        ledger.create_project(org.id, "support-bot")
        now = clock.now_us()
        paid = ledger.grant(org.id, _credits("100"), kind="purchase", scope="any", priority=100,
                            cost_basis=_credits("1.00"), currency="USD", idempotency_key="demo-purchase")
        promo = ledger.grant(org.id, _credits("20"), kind="promotional", scope="inference", priority=10,
                             expires_at_us=now + 7 * DAY_US, idempotency_key="demo-promo")
        console.print(f"Granted 100 purchased credits ({paid['grant_id']}) and 20 promotional credits "
                      f"expiring in 7 days ({promo['grant_id']}); promotional credits burn first (priority 10).")
        hold = ledger.reserve(org.id, _credits("25"), scope="inference", ttl_s=60, model="demo-model",
                              idempotency_key="demo-hold-1")
        console.print(f"Reserved 25 credits before an inference: hold {hold['hold_id']} earmarks "
                      + ", ".join(f"{format_amount(amount)} from {grant}" for grant, amount in hold["legs"]))
        posted = ledger.post(org.id, hold["hold_id"], _credits("21.375"), idempotency_key="demo-post-1")
        console.print(f"Posted the actual cost 21.375; released {format_amount(posted['released'])}.")
        again = ledger.post(org.id, hold["hold_id"], _credits("21.375"), idempotency_key="demo-post-1")
        console.print(f"Retried the same post with the same idempotency key: replayed={again.get('replayed')}, "
                      "nothing charged twice.")
        ledger.debit(org.id, _credits("1.5"), scope="inference", idempotency_key="demo-debit-1")
        console.print("Debited 1.5 credits of usage metered after the fact.")
        try:
            ledger.reserve(org.id, _credits("500"), scope="inference")
        except InsufficientCredits as error:
            console.print(f"Tried to reserve 500: [red]{error.message}[/red]")
        balance = ledger.balance(org.id)
        console.print(f"Balance: available [green]{format_amount(balance.available)}[/green], "
                      f"pending {format_amount(balance.pending)}")
        for chapter in CHAPTERS:
            try:
                module = importlib.import_module(chapter)
            except ModuleNotFoundError as error:
                if error.name == chapter:
                    continue
                raise
            chapter_run = getattr(module, "run_chapter", None)
            if chapter_run is not None:
                chapter_run(services, org.id, {"upstream": upstream, "upstream_model": upstream_model,
                                                   "serve": serve, "clock": clock})
        report = verify(services.database)
        console.print(f"creditgate verify: {'[green]ok[/green]' if report.ok else '[red]FAILED[/red]'} — "
                      f"{report.transactions} journal entries in {report.organizations} hash chains")
        if not report.ok:
            raise typer.Exit(1)
        console.print(f"Database: {db_path.resolve()}  (try: creditgate balance 'Acme AI' --db sqlite:///{db_path})")
    finally:
        services.close()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
