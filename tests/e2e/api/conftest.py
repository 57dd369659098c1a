"""A real creditgate server (uvicorn on a free loopback port, in a thread) per test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn

from creditgate.api import keystore
from creditgate.api.app import create_app
from creditgate.bootstrap import Services, bootstrap
from creditgate.clock import ManualClock
from creditgate.pricing.rate_cards import ModelRate, RateCard, RateCardVersion
from creditgate.pricing.rating import PricingEngine
from creditgate.pricing.unit_price import UnitPrice

SERVER_START_TIMEOUT_S = 10


def sample_engine(clock: ManualClock) -> PricingEngine:
    """2 credits per 1M input tokens, 8 per 1M output tokens, 0.01 per request."""
    models = {
        "gpt-test": ModelRate("gpt-test", {"input_tokens": UnitPrice(Decimal(2), 1_000_000),
                                           "output_tokens": UnitPrice(Decimal(8), 1_000_000),
                                           "requests": UnitPrice(Decimal("0.01"), 1)}),
        "free-model": ModelRate("free-model", {"input_tokens": UnitPrice(Decimal(0), 1_000_000)}),
    }
    card = RateCard.create("public", [RateCardVersion(1, 0, models)])
    return PricingEngine(card, clock=clock)


@dataclass
class Server:
    base_url: str
    services: Services
    clock: ManualClock
    admin_key: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_key)

    def new_org(self, name: str, credits: str | None = "100") -> str:
        with self.admin() as admin:
            org_id: str = admin.post("/api/v1/orgs", json={"name": name}).json()["id"]
            if credits:
                admin.post(f"/api/v1/orgs/{org_id}/grants", json={"credits": credits})
        return org_id

    def new_key(self, org_id: str, scopes: list[str], **extra: Any) -> str:
        with self.admin() as admin:
            answer = admin.post(f"/api/v1/orgs/{org_id}/keys",
                                json={"name": "k", "scopes": scopes, **extra})
            assert answer.status_code == 201, answer.text
            key: str = answer.json()["key"]
        return key


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(services: Services, **app_options: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = _free_port()
    config = uvicorn.Config(create_app(services, **app_options), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def server(database_url: str, clock: ManualClock) -> Iterator[Server]:
    yield from serve_api(database_url, clock)


def serve_api(database_url: str, clock: ManualClock, *, sample_pricing: bool = True) -> Iterator[Server]:
    """The REST API on a real server over ``database_url``, with an admin key (for fixtures)."""
    services = bootstrap(database_url, clock=clock)
    if sample_pricing:
        services.extras["pricing"] = sample_engine(clock)
    _, admin_key = keystore.create_key(services, kind="admin", name="tests")
    uvicorn_server, thread, base_url = start_server(services)
    try:
        yield Server(base_url, services, clock, admin_key)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        services.close()
