"""``creditgate deployments``: create, list, show, update and delete gateway deployments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import typer

from creditgate.cli.common import DB_OPTION, JSON_OPTION, console, fail, services
from creditgate.errors import CreditgateError
from creditgate.gateway.deployment_store import DeploymentStore

app = typer.Typer(help="Gateway deployments: which backend a model name routes to, and its prices",
                  no_args_is_help=True)


def _store(built: Any) -> DeploymentStore:
    return DeploymentStore(built.database, built.clock)


def _show(deployment: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(deployment, option=orjson.OPT_INDENT_2).decode())
        return
    for name, value in deployment.items():
        console.print(f"[bold]{name}[/bold]: {value}")


def _prices(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        fail('--prices must be JSON such as {"input_tokens": "150", "output_tokens": "600", "per": 1000000}')
    return value  # type: ignore[no-any-return]


@app.command("create")
def create(name: str = typer.Argument(..., help="The model name clients send"),
           backend: str = typer.Option("openai", help="openai or onnx"),
           base_url: str = typer.Option(None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"),
           upstream_model: str = typer.Option(None, help="Model name at the upstream (default: NAME)"),
           api_key_env: str = typer.Option(None, help="Environment variable holding the upstream key"),
           prices: str = typer.Option(..., help='JSON, e.g. {"input_tokens": "150", "output_tokens": "600", "per": 1000000}'),
           model_file: Path = typer.Option(None, "--model", help="The .onnx file (backend onnx)"),
           demo_model: bool = typer.Option(False, help="Deploy the bundled iris demo model (backend onnx)"),
           timeout_s: float = typer.Option(60, help="Upstream timeout in seconds"),
           concurrency_max: int = typer.Option(64, help="Requests in flight per gateway process"),
           max_tokens_default: int = typer.Option(4096, help="Cap sent upstream when a client sets none"),
           orgs: str = typer.Option(None, help="Comma-separated org ids allowed (default: every org)"),
           db: str = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Create a deployment."""
    data: dict[str, Any] = {"name": name, "backend": backend, "prices": _prices(prices),
                            "timeout_s": timeout_s, "concurrency_max": concurrency_max,
                            "max_tokens_default": max_tokens_default}
    for field, value in (("base_url", base_url), ("upstream_model", upstream_model), ("api_key_env", api_key_env)):
        if value:
            data[field] = value
    if orgs:
        data["orgs"] = [org.strip() for org in orgs.split(",") if org.strip()]
    model_bytes = None
    if demo_model:
        from creditgate.gateway.demo_model import demo_model_bytes

        model_bytes = demo_model_bytes()
    elif model_file is not None:
        model_bytes = model_file.read_bytes()
    with services(db) as built:
        try:
            _show(_store(built).create(data, model_bytes=model_bytes).to_public(), as_json)
        except CreditgateError as error:
            fail(error.message)


@app.command("list")
def list_(db: str = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """List deployments."""
    with services(db) as built:
        found = [deployment.to_public() for deployment in _store(built).list()]
    if as_json:
        typer.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    for deployment in found:
        console.print(f"{deployment['name']:30} {deployment['backend']:7} {deployment['kind']:10} "
                      f"{deployment['base_url'] or '(local)'}  prices={deployment['prices']}")


@app.command("show")
def show(name: str, db: str = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Show one deployment (credentials are never shown)."""
    with services(db) as built:
        try:
            _show(_store(built).get(name).to_public(), as_json)
        except CreditgateError as error:
            fail(error.message)


@app.command("update")
def update(name: str, changes: str = typer.Argument(..., help='JSON of fields to change, e.g. {"timeout_s": 30}'),
           db: str = DB_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Change fields of a deployment."""
    with services(db) as built:
        try:
            _show(_store(built).update(name, _prices(changes)).to_public(), as_json)
        except CreditgateError as error:
            fail(error.message)


@app.command("delete")
def delete(name: str, db: str = DB_OPTION) -> None:
    """Delete a deployment."""
    with services(db) as built:
        try:
            _store(built).delete(name)
        except CreditgateError as error:
            fail(error.message)
    typer.echo(f"deleted {name}")
