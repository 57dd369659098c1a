"""``creditgate admin``: administrative commands that need no running server."""

from __future__ import annotations

from typing import Annotated

import typer

from creditgate.api import keystore
from creditgate.bootstrap import bootstrap

app = typer.Typer(help="Administration: admin keys.", no_args_is_help=True)


@app.command("create-key")
def create_key(
    name: Annotated[str, typer.Option(help="A label for the key")] = "admin",
    db: Annotated[str | None, typer.Option("--db", help="Database URL")] = None,
) -> None:
    """Create an admin key and print it once; only its hash is stored."""
    services = bootstrap(db)
    try:
        key, secret = keystore.create_key(services, kind="admin", name=name)
    finally:
        services.close()
    typer.echo(secret)
    typer.echo(f"created admin key {key.id} ({name}); it is shown only this once", err=True)
