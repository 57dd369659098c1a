"""Per-key rate limits: requests per minute, tokens per minute and concurrent requests.

Windows are fixed minutes of the injected clock. Tokens are counted at admission with the
request's upper bound (as OpenAI does with ``max_tokens``), and the unused part is given back when
the request settles. In process by default; with ``CREDITGATE_REDIS_URL`` the counters live in
Redis, updated by one Lua script per admission, so that every gateway process shares them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final, Protocol

from creditgate.clock import Clock
from creditgate.errors import RateLimited

WINDOW_US: Final = 60_000_000
# A concurrency slot left behind by a crashed process is freed after this long: longer than a
# stream may run (config.STREAM_SECONDS_MAX), so that a live one never loses its slot.
CONCURRENCY_SLOT_TTL_S: Final = 2_000
REDIS_TIMEOUT_S: Final = 2.0
REDIS_CONNECTIONS_MAX: Final = 64
KEYS_TRACKED_MAX: Final = 100_000


@dataclass(frozen=True, slots=True)
class RateLimits:
    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    concurrent_max: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.requests_per_min is None and self.tokens_per_min is None and self.concurrent_max is None


@dataclass(frozen=True, slots=True)
class Ticket:
    """What an admission counted, so that release can give back the right amounts."""

    key_id: str
    window: int
    tokens: int
    concurrent: bool
    slot: str = ""  # on Redis, the member that holds this request's concurrency slot


class RateLimiter(Protocol):
    # Whether release waits for another server: if so, the gateway sends it while the charge is
    # being committed instead of after (see Pipeline.settle).
    remote: bool

    async def admit(self, key_id: str, limits: RateLimits, tokens: int) -> Ticket: ...
    async def release(self, ticket: Ticket, tokens_used: int) -> None: ...
    async def close(self) -> None: ...


def _refuse(which: str, limit: int, retry_after_s: int) -> RateLimited:
    return RateLimited(f"rate limit reached: {limit} {which}; retry after {retry_after_s} s",
                       retry_after_s=retry_after_s, limit=which)


class MemoryRateLimiter:
    remote = False

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._windows: dict[str, list[int]] = {}  # key -> [window, requests, tokens]
        self._concurrent: dict[str, int] = {}

    async def admit(self, key_id: str, limits: RateLimits, tokens: int) -> Ticket:
        now = self.clock.now_us()
        window, into = divmod(now, WINDOW_US)
        retry_after_s = max(1, -(-(WINDOW_US - into) // 1_000_000))
        counts = self._windows.get(key_id)
        if counts is None or counts[0] != window:
            if len(self._windows) >= KEYS_TRACKED_MAX:
                self._windows.clear()
            counts = self._windows[key_id] = [window, 0, 0]
        if limits.requests_per_min is not None and counts[1] + 1 > limits.requests_per_min:
            raise _refuse("requests per minute", limits.requests_per_min, retry_after_s)
        if limits.tokens_per_min is not None and counts[2] + tokens > limits.tokens_per_min:
            raise _refuse("tokens per minute", limits.tokens_per_min, retry_after_s)
        running = self._concurrent.get(key_id, 0)
        if limits.concurrent_max is not None and running + 1 > limits.concurrent_max:
            raise _refuse("concurrent requests", limits.concurrent_max, 1)
        counts[1] += 1
        counts[2] += tokens
        self._concurrent[key_id] = running + 1
        return Ticket(key_id, window, tokens, True)

    async def release(self, ticket: Ticket, tokens_used: int) -> None:
        running = self._concurrent.get(ticket.key_id, 0) - 1
        if running > 0:
            self._concurrent[ticket.key_id] = running
        else:
            self._concurrent.pop(ticket.key_id, None)
        counts = self._windows.get(ticket.key_id)
        if counts is not None and counts[0] == ticket.window:
            counts[2] -= max(0, ticket.tokens - tokens_used)

    async def close(self) -> None:
        return None


# Checks all three limits and then counts, atomically. Returns {0} or {which}. The running
# requests are a sorted set of slots scored by when each expires: a slot that a crashed process
# never released expires on its own, however busy the key stays (a plain counter whose expiry
# every admission pushed back would keep it forever).
_ADMIT_LUA: Final = """
local requests = tonumber(redis.call('GET', KEYS[1]) or '0')
local tokens = tonumber(redis.call('GET', KEYS[2]) or '0')
local rpm, tpm, cmax, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now_s, ttl_s, slot = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_s)
if rpm >= 0 and requests + 1 > rpm then return {1} end
if tpm >= 0 and tokens + want > tpm then return {2} end
if cmax >= 0 and redis.call('ZCARD', KEYS[3]) + 1 > cmax then return {3} end
redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120)
redis.call('INCRBY', KEYS[2], want); redis.call('EXPIRE', KEYS[2], 120)
redis.call('ZADD', KEYS[3], now_s + ttl_s, slot); redis.call('EXPIRE', KEYS[3], ttl_s)
return {0}
"""
_RELEASE_LUA: Final = """
redis.call('ZREM', KEYS[1], ARGV[2])
local unused = tonumber(ARGV[1])
if unused > 0 and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], unused) end
return 0
"""


class RedisRateLimiter:
    remote = True

    def __init__(self, url: str, clock: Clock, *, prefix: str = "creditgate:rl") -> None:
        import redis.asyncio as redis_asyncio

        self.clock = clock
        self.prefix = prefix
        self.client: Any = redis_asyncio.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            max_connections=REDIS_CONNECTIONS_MAX)
        self._admit = self.client.register_script(_ADMIT_LUA)
        self._release = self.client.register_script(_RELEASE_LUA)

    def _keys(self, key_id: str, window: int) -> list[str]:
        base = f"{self.prefix}:{key_id}"
        return [f"{base}:r:{window}", f"{base}:t:{window}", f"{base}:slots"]

    async def admit(self, key_id: str, limits: RateLimits, tokens: int) -> Ticket:
        now = self.clock.now_us()
        window, into = divmod(now, WINDOW_US)
        retry_after_s = max(1, -(-(WINDOW_US - into) // 1_000_000))
        unset = -1
        slot = secrets.token_hex(8)
        answer = await self._admit(keys=self._keys(key_id, window), args=[
            unset if limits.requests_per_min is None else limits.requests_per_min,
            unset if limits.tokens_per_min is None else limits.tokens_per_min,
            unset if limits.concurrent_max is None else limits.concurrent_max,
            tokens, now // 1_000_000, CONCURRENCY_SLOT_TTL_S, slot])
        which = int(answer[0])
        if which == 1:
            raise _refuse("requests per minute", limits.requests_per_min or 0, retry_after_s)
        if which == 2:
            raise _refuse("tokens per minute", limits.tokens_per_min or 0, retry_after_s)
        if which == 3:
            raise _refuse("concurrent requests", limits.concurrent_max or 0, 1)
        return Ticket(key_id, window, tokens, True, slot)

    async def release(self, ticket: Ticket, tokens_used: int) -> None:
        keys = self._keys(ticket.key_id, ticket.window)
        await self._release(keys=[keys[2], keys[1]], args=[max(0, ticket.tokens - tokens_used), ticket.slot])

    async def close(self) -> None:
        await self.client.aclose()
