"""``creditgate serve``: the REST API (and the gateway, when installed) under uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from creditgate.bootstrap import bootstrap
from creditgate.storage.database import database_url_from_env

app = typer.Typer(help="Run the creditgate service.", no_args_is_help=False)


@app.command()
def serve(
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: CREDITGATE_DATABASE_URL or sqlite:///creditgate.db)")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port", min=1, max=65535)] = 8080,
    workers: Annotated[int, typer.Option(help="Worker processes", min=1, max=64)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve /api/v1, its docs at /api/v1/docs, and /healthz."""
    import uvicorn

    url = database_url_from_env(db)
    os.environ["CREDITGATE_DATABASE_URL"] = url
    bootstrap(url, migrate=True).close()  # migrate once, before the workers start
    typer.echo(f"creditgate serving {host}:{port} on {url.split('@')[-1]} with {workers} worker(s)")
    uvicorn.run("creditgate.api.server:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=False)


def register(root: typer.Typer) -> None:
    """Mount ``serve`` as a top-level command of ``creditgate``."""
    root.command("serve")(serve)
