"""The gateway object: the request pipeline plus the collaborators it needs, wired once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from creditgate.gateway.config import GatewayConfig
from creditgate.gateway.deployment_store import DeploymentStore
from creditgate.gateway.limit_store import LimitStore
from creditgate.gateway.limits import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from creditgate.gateway.local_models import LocalModels
from creditgate.gateway.pipeline import Pipeline, require_inference
from creditgate.gateway.upstream import Upstreams
from creditgate.gateway.usage import LedgerBatchedRecorder, RollUps, write_usage_rows

log = logging.getLogger(__name__)
EXTRA_NAME = "gateway"


class Gateway(Pipeline):
    def __init__(self, services: Any, config: GatewayConfig | None = None) -> None:
        self.services = services
        self.config = config or GatewayConfig.from_env()
        self.deployments = DeploymentStore(services.database, services.clock,
                                           cache_ttl_s=self.config.deployment_cache_ttl_s)
        self.limit_store = LimitStore(services.database, services.clock,
                                      cache_ttl_s=self.config.limits_cache_ttl_s)
        self.local_models = LocalModels(self.deployments.model_bytes, threads=self.config.onnx_threads)
        self.roll_ups = RollUps(services.database)
        self.usage = LedgerBatchedRecorder(services.ledger.writer, write_usage_rows, written=self.roll_ups.wake)
        self._authenticate = _authenticator()
        self._last_available = {}
        self._unheld = {}
        self._unheld_waiters = {}
        # Loop-bound clients are made on first use, inside the server's event loop.
        self._limiter: RateLimiter | None = None
        self._upstreams: Upstreams | None = None

    def authenticate(self, header: str | None) -> Any:
        principal = self._authenticate(self.services, header)
        require_inference(principal)
        return principal

    async def limiter(self) -> RateLimiter:
        if self._limiter is None:
            if self.config.redis_url:
                self._limiter = RedisRateLimiter(self.config.redis_url, self.services.clock)
            else:
                self._limiter = MemoryRateLimiter(self.services.clock)
        return self._limiter

    async def upstreams(self) -> Upstreams:
        if self._upstreams is None:
            self._upstreams = Upstreams()
        return self._upstreams

    async def aclose(self) -> None:
        if self._upstreams is not None:
            await self._upstreams.close()
            self._upstreams = None
        if self._limiter is not None:
            await self._limiter.close()
            self._limiter = None

    def close(self) -> None:
        """Flush usage records and stop the worker threads (Services.close calls this)."""
        self.usage.flush()
        self.usage.close()
        self.roll_ups.close()
        self.local_models.close()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None and (self._upstreams is not None or self._limiter is not None):
            try:
                asyncio.run(self.aclose())
            except Exception:  # the loop that owned them is gone; the OS closes the sockets
                log.debug("closing gateway clients outside their loop failed", exc_info=True)


def get_gateway(services: Any) -> Gateway:
    gateway = services.extras.get(EXTRA_NAME)
    if gateway is None:
        gateway = services.extras[EXTRA_NAME] = Gateway(services)
    return gateway  # type: ignore[no-any-return]


def _authenticator() -> Any:
    from creditgate.api.auth import authenticate

    return authenticate
