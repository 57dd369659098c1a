"""Rate limiters, in process and on real Redis, with the same behaviour."""

from __future__ import annotations

import asyncio

import pytest

from creditgate.clock import ManualClock
from creditgate.errors import RateLimited
from creditgate.gateway.limits import (
    CONCURRENCY_SLOT_TTL_S,
    MemoryRateLimiter,
    RateLimits,
    RedisRateLimiter,
)


def limiters(kind: str, clock: ManualClock, redis_url: str | None) -> list:  # type: ignore[type-arg]
    if kind == "memory":
        return [MemoryRateLimiter(clock)]
    # Two limiters on one Redis stand for two gateway processes.
    return [RedisRateLimiter(redis_url or "", clock), RedisRateLimiter(redis_url or "", clock)]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def kind_and_url(request):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "memory", None


def test_requests_tokens_and_concurrency_are_shared(kind_and_url) -> None:  # type: ignore[no-untyped-def]
    kind, url = kind_and_url
    clock = ManualClock()

    async def scenario() -> None:
        first, *rest = limiters(kind, clock, url)
        second = rest[0] if rest else first
        limits = RateLimits(requests_per_min=3, tokens_per_min=100, concurrent_max=2)
        a = await first.admit("key1", limits, 10)
        b = await second.admit("key1", limits, 10)
        with pytest.raises(RateLimited, match="concurrent"):
            await first.admit("key1", limits, 10)
        await second.release(a, 10)
        c = await first.admit("key1", limits, 10)
        with pytest.raises(RateLimited, match="requests per minute") as caught:
            await second.admit("key1", limits, 10)
        assert caught.value.retry_after_s >= 1
        await first.release(b, 10)
        await first.release(c, 10)
        clock.advance(seconds=60)
        big = await second.admit("key1", limits, 90)
        with pytest.raises(RateLimited, match="tokens per minute"):
            await first.admit("key1", limits, 20)
        await second.release(big, 5)  # unused tokens come back
        await first.release(await first.admit("key1", limits, 20), 20)
        for limiter in {id(x): x for x in (first, second)}.values():
            await limiter.close()

    asyncio.run(scenario())


@pytest.mark.redis
def test_a_slot_a_crashed_process_left_on_redis_is_freed_however_busy_the_key_stays(redis_url: str) -> None:
    clock = ManualClock()

    async def scenario() -> None:
        crashed, alive = RedisRateLimiter(redis_url, clock), RedisRateLimiter(redis_url, clock)
        limits = RateLimits(concurrent_max=2)
        await crashed.admit("key1", limits, 1)  # never released: its process died
        await crashed.close()
        # The key stays busy: a request a minute, each admitted and released.
        minutes = (CONCURRENCY_SLOT_TTL_S - 1) // 60  # all within the dead slot's ttl
        for _ in range(minutes):
            await alive.release(await alive.admit("key1", limits, 1), 1)
            clock.advance(seconds=60)
        one = await alive.admit("key1", limits, 1)
        with pytest.raises(RateLimited, match="concurrent"):
            await alive.admit("key1", limits, 1)  # the dead slot still counts until its ttl
        clock.advance(seconds=CONCURRENCY_SLOT_TTL_S - 60 * minutes)
        two = await alive.admit("key1", limits, 1)  # at its ttl it is gone: both slots are ours
        with pytest.raises(RateLimited, match="concurrent"):
            await alive.admit("key1", limits, 1)
        await alive.release(one, 1)
        await alive.release(two, 1)
        await alive.close()

    asyncio.run(scenario())
