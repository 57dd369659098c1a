"""Three gateway processes on one PostgreSQL and one Redis serve one organization.

The ledger's guarantees and the rate limits must hold across processes exactly as in one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from tests.support.openai_upstream import create_upstream_app
from tests.support.servers import free_port, serve

from creditgate.api import keystore
from creditgate.bootstrap import Services, bootstrap
from creditgate.gateway.deployment_store import DeploymentStore
from creditgate.gateway.limit_store import LimitStore
from creditgate.ledger.credits import parse_amount
from creditgate.ledger.verify import verify

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[3]
PROCESSES = 3
STARTUP_TIMEOUT_S = 60


@pytest.fixture
def cluster(postgres_url: str, redis_url: str) -> Iterator[tuple[Services, list[str], str]]:
    services = bootstrap(postgres_url)
    with serve(create_upstream_app()) as upstream_url:
        DeploymentStore(services.database, services.clock).create({
            "name": "mock-gpt", "backend": "openai", "base_url": f"{upstream_url}/v1",
            "upstream_model": "mock-gpt", "prices": {"input_tokens": "150", "output_tokens": "600",
                                                     "per": 1000000}})
        ports = [free_port() for _ in range(PROCESSES)]
        env = {**os.environ, "CREDITGATE_DATABASE_URL": postgres_url, "CREDITGATE_REDIS_URL": redis_url}
        processes = [subprocess.Popen([sys.executable, "-m", "creditgate.gateway", "--port", str(port)],
                                      cwd=ROOT, env=env) for port in ports]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            _wait_until_up(urls)
            yield services, urls, upstream_url
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            services.close()


def _wait_until_up(urls: list[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for url in urls:
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code in (200, 401):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"gateway {url} did not start"
            time.sleep(0.2)


def _org_key(services: Services, name: str, credits: str) -> tuple[str, str, str]:
    org = services.ledger.create_org(name)
    services.ledger.grant(org.id, parse_amount(credits))
    key, secret = keystore.create_key(services, kind="org", name=f"{name}-key", org_id=org.id,
                                      scopes=["inference", "read"])
    return org.id, key.id, secret


async def _chat(client: httpx.AsyncClient, url: str, secret: str, prompt: str, max_tokens: int) -> int:
    response = await client.post(f"{url}/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                                 json={"model": "mock-gpt", "max_tokens": max_tokens,
                                       "messages": [{"role": "user", "content": prompt}]})
    return response.status_code


def test_three_processes_never_overspend_one_org(cluster: tuple[Services, list[str], str]) -> None:
    services, urls, _ = cluster
    # Each request holds up to 2000 output tokens (1.2 credits at 600 per 1M), so 2 credits cover
    # at most one request in flight: the processes must refuse most of the burst with 402.
    org_id, _, secret = _org_key(services, "shared-org", "2")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*(
                _chat(client, urls[index % PROCESSES], secret, f"hello number {index}", 2000)
                for index in range(90)))

    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 402}
    assert statuses.count(200) >= 1 and statuses.count(402) >= 1
    services.ledger.expire_due(org_id)
    balance = services.ledger.balance(org_id)
    assert balance.pending == 0, "no hold is left behind"
    # The upstream answers 5 output tokens and (words + 3) input tokens; charges are exact.
    spent = parse_amount("2") - balance.available
    assert 0 < spent <= parse_amount("2")
    with services.database.read() as connection:
        posted = connection.execute(text(
            "SELECT COALESCE(SUM(posted), 0), COUNT(*) FROM holds WHERE org_id = :org AND status = 'posted'"),
            {"org": org_id}).one()
    assert posted[0] == spent and posted[1] == statuses.count(200)
    assert verify(services.database).ok


def test_rate_limits_are_shared_between_processes(cluster: tuple[Services, list[str], str]) -> None:
    services, urls, _ = cluster
    _, key_id, secret = _org_key(services, "limited-org", "1000")
    LimitStore(services.database, services.clock).put(f"key:{key_id}", {"concurrent_max": 2})

    async def slow_burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            # '#slow' makes the upstream take a second, so all six overlap in time.
            return await asyncio.gather(*(
                _chat(client, urls[index % PROCESSES], secret, "#slow please", 5) for index in range(6)))

    statuses = asyncio.run(slow_burst())
    assert statuses.count(200) == 2, statuses
    assert statuses.count(429) == 4, statuses
