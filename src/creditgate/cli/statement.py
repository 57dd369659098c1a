"""``creditgate statement``: list, show (JSON, CSV, HTML) and verify signed statements offline."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from creditgate.billing.render import to_csv, to_html
from creditgate.billing.signing import load_document, verify_document
from creditgate.cli.billing import billing_of, org_id_of
from creditgate.cli.common import DB_OPTION, fail, print_json, services
from creditgate.errors import InvalidInput

app = typer.Typer(help="Signed billing statements", no_args_is_help=True)
FORMATS = ("json", "csv", "html")
OUTPUT_OPTION = typer.Option(None, "--output", "-o", help="Write to this file")
PUBLIC_KEY_OPTION = typer.Option(None, "--public-key", help="Trusted public key (base64); repeat for several")


@app.command("list")
def list_statements(org: str, db: str | None = DB_OPTION) -> None:
    with services(db) as built:
        print_json(billing_of(built).list_statements(org_id_of(built, org)))


@app.command("show")
def show(org: str, statement_id: str, format: str = typer.Option("json", "--format", help="json, csv or html"),
         output: Path | None = OUTPUT_OPTION,
         db: str | None = DB_OPTION) -> None:
    if format not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}", param="format")
    with services(db) as built:
        document = billing_of(built).statement(org_id_of(built, org), statement_id)
    if format == "json":
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = to_csv(document) if format == "csv" else to_html(document)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")


@app.command("public-key")
def public_key(db: str | None = DB_OPTION) -> None:
    """The public keys statements are signed with (what to pass to verify --public-key)."""
    with services(db) as built:
        print_json(billing_of(built).public_keys())


@app.command("verify")
def verify(file: Path, public_key: list[str] | None = PUBLIC_KEY_OPTION) -> None:
    """Check a statement offline: signature, trusted key (when given) and its arithmetic."""
    try:
        data = file.read_bytes()
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}")
    result = verify_document(load_document(data), trusted_public_keys=tuple(public_key or ()))
    if not result.ok:
        fail(f"statement NOT valid: {result.reason}")
    typer.echo(f"statement valid: {result.reason} (key {result.key_id})")
