"""What every CLI command shares: opening services, parsing amounts and times, printing."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from creditgate.bootstrap import Services, bootstrap
from creditgate.clock import Clock, ManualClock, SystemClock, parse_iso
from creditgate.errors import CreditgateError, InvalidInput
from creditgate.ledger.credits import AmountError, parse_amount

console = Console()
DB_OPTION = typer.Option(None, "--db", help="Database URL (default: $CREDITGATE_DATABASE_URL or sqlite:///creditgate.db)")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON for scripts")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def cli_clock() -> Clock:
    """The system clock, or the fixed instant in ``CREDITGATE_NOW`` (ISO 8601): a command runs
    as if it were that moment. Tests move time this way instead of waiting for it."""
    text = os.environ.get("CREDITGATE_NOW")
    if not text:
        return SystemClock()
    try:
        return ManualClock(parse_iso(text, field="CREDITGATE_NOW"))
    except CreditgateError as error:
        fail(error.message)


@contextmanager
def services(db: str | None) -> Iterator[Services]:
    clock = cli_clock()
    try:
        built = bootstrap(db, clock=clock)
    except CreditgateError as error:
        fail(error.message)
    except Exception as error:  # noqa: BLE001 - an unreachable or unreadable database is an operating error here
        fail(f"cannot open database: {error}")
    try:
        yield built
    finally:
        built.close()


def amount(text: str, field: str, *, allow_zero: bool = False) -> int:
    try:
        return parse_amount(text, field=field, allow_zero=allow_zero)
    except AmountError as error:
        raise InvalidInput(str(error), param=field) from None


def instant(text: str | None, field: str) -> int | None:
    return None if text is None else parse_iso(text, field=field)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
