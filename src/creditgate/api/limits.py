"""Every limit of the REST API as a named constant, and the two pieces of code that enforce them
before a route runs: a request-body size cap and a per-key request rate limiter."""

from __future__ import annotations

import threading
import time
from typing import Any, Final

import orjson

from creditgate.errors import PayloadTooLarge

BODY_BYTES_MAX: Final = 4 * 1024 * 1024
EVENT_BATCH_MAX: Final = 1_000
PAGE_SIZE_DEFAULT: Final = 100
PAGE_SIZE_MAX: Final = 1_000
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 150
REQUESTS_PER_KEY_PER_S: Final = 1_000
REQUEST_BURST_MAX: Final = 2_000
RATE_LIMITER_KEYS_MAX: Final = 100_000
KEY_CACHE_TTL_S: Final = 1.0
KEY_CACHE_ENTRIES_MAX: Final = 100_000


def _too_large(limit_bytes: int) -> str:
    return f"request body is larger than {limit_bytes} bytes"


class _TooLarge(PayloadTooLarge):
    """Raised from inside the app's read of the body. A PayloadTooLarge, so that a route's own
    error handling answers it as the 413 it is (not as an unexpected error, a 500)."""


class BodySizeLimit:
    """Refuse bodies over ``limit_bytes`` with 413, before the application reads all of them.

    A declared Content-Length over the limit is refused at once; a chunked body is counted as it
    arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: Any, limit_bytes: int = BODY_BYTES_MAX,
                 by_prefix: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit_bytes = limit_bytes
        # Larger caps for some paths (the gateway's /v1 requests, model uploads), keyed by path
        # prefix; parts register theirs when they are mounted, so the dict is read per request.
        self.by_prefix = by_prefix if by_prefix is not None else {}

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.by_prefix.items():
            if path.startswith(prefix):
                return limit
        return self.limit_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_bytes = self.limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit_bytes:
                    await self._refuse(send, limit_bytes)
                    return
        seen = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit_bytes:
                    raise _TooLarge(_too_large(limit_bytes))
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit_bytes)

    async def _refuse(self, send: Any, limit_bytes: int) -> None:
        body = orjson.dumps({"error": {
            "type": "invalid_request_error", "code": "payload_too_large", "param": None,
            "message": _too_large(limit_bytes)}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per API key, in process: ``rate_per_s`` sustained, ``burst`` at once.

    Each server process limits on its own; with N processes a key may reach N times the rate,
    unless CREDITGATE_REDIS_URL makes them share one bucket (creditgate.api.shared_limits).
    """

    def __init__(self, rate_per_s: float = REQUESTS_PER_KEY_PER_S, burst: int = REQUEST_BURST_MAX) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token; answer 0 if allowed, else the seconds until a token is back."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate_per_s
            if len(self._buckets) >= RATE_LIMITER_KEYS_MAX and key not in self._buckets:
                self._buckets.clear()
            self._buckets[key] = (tokens - 1, now)
            return 0.0
