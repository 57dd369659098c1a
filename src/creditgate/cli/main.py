"""The ``creditgate`` command: one Typer app with a sub-app per part of the system."""

from __future__ import annotations

import importlib
import sys

import typer
from sqlalchemy.exc import SQLAlchemyError

from creditgate.cli import ledger_commands as ledger_cli
from creditgate.errors import CreditgateError
from creditgate.ledger.credits import AmountError

app = typer.Typer(help="creditgate: prepaid AI-inference credits", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(ledger_cli.db_app, name="db")
app.add_typer(ledger_cli.orgs_app, name="orgs")
app.add_typer(ledger_cli.projects_app, name="projects")
app.add_typer(ledger_cli.grants_app, name="grants")
app.add_typer(ledger_cli.holds_app, name="holds")
app.command("balance")(ledger_cli.balance)
app.command("debit")(ledger_cli.debit)
app.command("journal")(ledger_cli.journal)
app.command("verify")(ledger_cli.verify)
app.command("expire")(ledger_cli.expire)

# Parts that live in their own modules register themselves here when present.
_SUB_APPS = {
    "prices": "creditgate.cli.prices",
    "admin": "creditgate.cli.admin",
    "deployments": "creditgate.cli.deployments",
    "billing": "creditgate.cli.billing",
    "statement": "creditgate.cli.statement",
}
for _name, _module in _SUB_APPS.items():
    try:
        app.add_typer(importlib.import_module(_module).app, name=_name)
    except ModuleNotFoundError as _error:
        if _error.name != _module:
            raise
for _module in ("creditgate.cli.serve", "creditgate.cli.demo", "creditgate.cli.forecast"):
    try:
        importlib.import_module(_module).register(app)
    except ModuleNotFoundError as _error:
        if _error.name != _module:
            raise


def run() -> None:
    """Entry point: operating errors become one line on stderr and a non-zero exit, never a traceback."""
    try:
        # Not standalone, so that usage errors (an unknown option, a missing argument) reach the
        # handler below as one line instead of Typer's multi-line usage panel.
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except CreditgateError as error:
        typer.echo(f"error: {error.message}", err=True)
        sys.exit(1)
    except AmountError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
    except SQLAlchemyError as error:
        # An unreachable database or one on an unexpected schema: one line, not a traceback.
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        typer.echo(f"error: database: {reason}", err=True)
        sys.exit(1)
    except Exception as error:
        # Typer vendors its own click, so usage errors are matched by shape, not by class.
        if not (callable(getattr(error, "format_message", None)) and isinstance(getattr(error, "exit_code", None), int)):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: show its help, as before
            error.show()  # type: ignore[attr-defined]
        else:
            typer.echo(f"error: {' '.join(error.format_message().split())}", err=True)  # type: ignore[attr-defined]
        sys.exit(error.exit_code)  # type: ignore[attr-defined]
    # A command's return value is not an exit status; typer.Exit(n) arrives here as n.
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
