"""A real stack for tracking: the test upstream and creditgate (API, gateway, dashboard) on
loopback, with the tracking worker off so that tests step it with the injected clock."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.e2e.gateway.conftest import ADMIN_KEY, Stack, gateway_app
from tests.support.openai_upstream import create_upstream_app
from tests.support.servers import serve

from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock


@pytest.fixture
def tracking_stack(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("CREDITGATE_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("CREDITGATE_TRACKING_WORKER", "0")
    monkeypatch.delenv("CREDITGATE_REDIS_URL", raising=False)
    monkeypatch.delenv("CREDITGATE_METRICS_TOKEN", raising=False)
    clock = ManualClock()
    services = bootstrap(sqlite_url, clock=clock)
    upstream_app = create_upstream_app()
    with serve(upstream_app) as upstream_url, serve(gateway_app(services)) as url, \
            httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30) as admin:
        yield Stack(services, clock, url, upstream_url, upstream_app, admin)
    services.close()
