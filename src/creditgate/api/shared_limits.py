"""The REST API's per-key token bucket kept in Redis, so that every server process shares it.

With ``CREDITGATE_REDIS_URL`` set, ``creditgate serve`` limits each key across all its workers
and processes to the configured rate, as one process would (without Redis each process keeps its
own bucket, see :class:`creditgate.api.limits.RateLimiter`). The bucket moves in one Lua script,
so concurrent requests from several processes never both take the last token. Time comes from
the server's injected clock; a process whose clock lags the bucket's never refills it backwards.

If Redis cannot be reached the request is let through and the failure logged: a rate limiter
that took the API down with it would be worse than a few unthrottled requests.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from creditgate.clock import Clock

REDIS_TIMEOUT_S: Final = 0.5
KEY_PREFIX: Final = "creditgate:api:bucket"
log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: now (us), rate (tokens/s), burst. Returns the wait in us (0 = allowed).
_TAKE_LUA: Final = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) / 1000000 * rate)
else
  now = at
end
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) / rate * 1000000)
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RedisRateLimiter:
    def __init__(self, url: str, clock: Clock, rate_per_s: float, burst: int, *,
                 prefix: str = KEY_PREFIX) -> None:
        import redis

        assert rate_per_s > 0 and burst >= 1
        self.clock = clock
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.prefix = prefix
        self.client: Any = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                                socket_connect_timeout=REDIS_TIMEOUT_S)
        self._take = self.client.register_script(_TAKE_LUA)

    def take(self, key: str) -> float:
        """Take one token; answer 0 if allowed, else the seconds until a token is back."""
        import redis

        try:
            wait_us = int(self._take(keys=[f"{self.prefix}:{key}"],
                                     args=[self.clock.now_us(), repr(float(self.rate_per_s)), self.burst]))
        except redis.RedisError as error:
            log.warning("API rate limit not applied: Redis failed (%s)", error)
            return 0.0
        return wait_us / 1_000_000

    def close(self) -> None:
        self.client.close()
