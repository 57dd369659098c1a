"""The REST API's per-key rate limit shared by several server processes through real Redis."""

from __future__ import annotations

import logging

import httpx
import pytest

from creditgate.api import keystore
from creditgate.api.app import create_app
from creditgate.api.shared_limits import RedisRateLimiter
from creditgate.bootstrap import bootstrap
from creditgate.clock import ManualClock
from tests.support.servers import serve

pytestmark = pytest.mark.redis


def test_two_processes_draw_from_one_bucket(redis_url: str, clock: ManualClock) -> None:
    first = RedisRateLimiter(redis_url, clock, rate_per_s=1.0, burst=3)
    second = RedisRateLimiter(redis_url, clock, rate_per_s=1.0, burst=3)
    try:
        assert [first.take("key_a"), second.take("key_a"), first.take("key_a")] == [0.0, 0.0, 0.0]
        assert second.take("key_a") == pytest.approx(1.0)  # the burst is spent across both
        assert first.take("key_b") == 0.0  # another key has its own bucket
        clock.advance(seconds=1)
        assert second.take("key_a") == 0.0  # one token came back...
        assert first.take("key_a") == pytest.approx(1.0)  # ...and only one
    finally:
        first.close()
        second.close()


def test_a_process_whose_clock_lags_never_refills_the_bucket(redis_url: str) -> None:
    ahead, behind = ManualClock(), ManualClock()
    ahead.advance(seconds=10)
    first = RedisRateLimiter(redis_url, ahead, rate_per_s=1.0, burst=1)
    second = RedisRateLimiter(redis_url, behind, rate_per_s=1.0, burst=1)
    try:
        assert first.take("key_a") == 0.0
        assert second.take("key_a") == pytest.approx(1.0)
    finally:
        first.close()
        second.close()


def test_unreachable_redis_lets_requests_through_and_says_so(clock: ManualClock,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", clock, rate_per_s=1.0, burst=1)
    with caplog.at_level(logging.WARNING):
        assert limiter.take("key_a") == 0.0
    assert "Redis failed" in caplog.text
    limiter.close()


def test_api_servers_share_the_limit_of_a_key(redis_url: str, database_url: str, clock: ManualClock,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITGATE_REDIS_URL", redis_url)
    services = bootstrap(database_url, clock=clock)
    org = services.ledger.create_org("limited")
    _, secret = keystore.create_key(services, kind="org", name="reader", org_id=org.id, scopes=["read"])
    first_app = create_app(services, requests_per_key_per_s=1.0, request_burst=2)
    second_app = create_app(services, requests_per_key_per_s=1.0, request_burst=2)
    try:
        with serve(first_app) as first, serve(second_app) as second:
            headers = {"authorization": f"Bearer {secret}"}
            statuses = [httpx.get(f"{url}/api/v1/orgs/{org.id}/balance", headers=headers).status_code
                        for url in (first, second)]
            assert statuses == [200, 200]
            refused = httpx.get(f"{first}/api/v1/orgs/{org.id}/balance", headers=headers)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
    finally:
        services.close()
