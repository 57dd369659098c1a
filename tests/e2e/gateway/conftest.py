"""A real stack per test: a test upstream and creditgate, each served by uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.support.openai_upstream import create_upstream_app
from tests.support.servers import serve

from creditgate.bootstrap import Services, bootstrap
from creditgate.clock import ManualClock
from creditgate.ledger.credits import parse_amount

ADMIN_KEY = "test-admin-key-0123456789abcdef"
PRICES = {"input_tokens": "150", "output_tokens": "600", "per": 1000000}
# PRICES plus a per-request fee: 10,000 credits per million requests, FEE micro-credits a request.
PRICES_WITH_FEE = {**PRICES, "requests": "10000"}
FEE = parse_amount("0.01")


def cost(input_tokens: int, output_tokens: int) -> int:
    """Micro-credits at PRICES: 150 / 600 credits per million tokens (150 and 600 micro-credits a token)."""
    return input_tokens * 150 + output_tokens * 600


@dataclass
class Stack:
    services: Services
    clock: ManualClock
    url: str
    upstream_url: str
    upstream: Any
    admin: httpx.Client

    def org_with_key(self, name: str, credits: str, *, scopes: tuple[str, ...] = ("inference",),
                     overdraft: str = "0") -> tuple[str, str, str]:
        """A new organization holding ``credits``; answers (org id, key id, secret)."""
        from creditgate.api import keystore

        org = self.services.ledger.create_org(name, overdraft_limit=parse_amount(overdraft))
        if parse_amount(credits):
            self.services.ledger.grant(org.id, parse_amount(credits))
        key, secret = keystore.create_key(self.services, kind="org", name=f"{name}-key", org_id=org.id,
                                          scopes=list(scopes))
        return org.id, key.id, secret

    def deploy(self, **fields: Any) -> dict[str, Any]:
        body = {"backend": "openai", "base_url": f"{self.upstream_url}/v1", "prices": PRICES, **fields}
        response = self.admin.post("/api/v1/deployments", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def openai(self, secret: str, **options: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=secret, max_retries=0, **options)

    def openai_async(self, secret: str, **options: Any) -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=secret, max_retries=0,
                                  http_client=openai.DefaultAsyncHttpxClient(
                                      limits=httpx.Limits(max_connections=300)), **options)

    def usage_rows(self) -> list[dict[str, Any]]:
        import orjson
        from sqlalchemy import select

        from creditgate.storage.tables_api import usage_records

        self.services.extras["gateway"].usage.flush()
        with self.services.database.read() as connection:
            rows = [dict(row._mapping) for row in connection.execute(select(usage_records).order_by(usage_records.c.id))]
        for row in rows:
            row["meters"] = orjson.loads(row["meters"])
            row["tags"] = orjson.loads(row["tags"])
        return rows


def gateway_app(services: Services) -> Any:
    """The REST API's app (which installs the gateway) when it exists, else the gateway alone."""
    try:
        from creditgate.api.app import create_app
    except ImportError:
        from creditgate.gateway.routes import create_gateway_app

        return create_gateway_app(services)
    return create_app(services)


@pytest.fixture
def stack(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield from _stack(sqlite_url, monkeypatch)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def writer_thread_stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A stack whose ledger commits on the writer thread: PostgreSQL's way, and SQLite's when
    told (``CREDITGATE_LEDGER_COMMITS=thread``)."""
    monkeypatch.setenv("CREDITGATE_LEDGER_COMMITS", "thread")
    yield from _stack(request.getfixturevalue(f"{request.param}_url"), monkeypatch)


@pytest.fixture
def shared_limits_stack(postgres_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """PostgreSQL with the keys' rate limits in Redis: how several gateway processes run."""
    yield from _stack(postgres_url, monkeypatch, redis_url=redis_url)


def _stack(database_url: str, monkeypatch: pytest.MonkeyPatch, *, redis_url: str | None = None) -> Iterator[Stack]:
    monkeypatch.setenv("CREDITGATE_ADMIN_KEY", ADMIN_KEY)
    if redis_url is None:
        monkeypatch.delenv("CREDITGATE_REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("CREDITGATE_REDIS_URL", redis_url)
    clock = ManualClock()
    services = bootstrap(database_url, clock=clock)
    upstream_app = create_upstream_app()
    with serve(upstream_app) as upstream_url, serve(gateway_app(services)) as url, \
            httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as admin:
        yield Stack(services, clock, url, upstream_url, upstream_app, admin)
    services.close()
