"""Which rate limits apply to a key: its own row, else its organization's, else the default.

Read from ``gateway_rate_limits`` into a snapshot reloaded in the background every
``cache_ttl_s`` (see :mod:`creditgate.gateway.snapshot`), so the hot path never queries.
"""

from __future__ import annotations

import re
from typing import Any, Final

from sqlalchemy import delete, select

from creditgate.clock import Clock
from creditgate.errors import InvalidInput, NotFound
from creditgate.gateway.limits import RateLimits
from creditgate.gateway.snapshot import Snapshot
from creditgate.storage.database import Database
from creditgate.storage.tables_gateway import gateway_rate_limits

LIMIT_MAX: Final = 10**12
_SUBJECT: Final = re.compile(r"^(default|key:[\w-]{1,70}|org:[\w-]{1,70})$")
NO_LIMITS: Final = RateLimits()


class LimitStore:
    def __init__(self, database: Database, clock: Clock, *, cache_ttl_s: float = 2.0) -> None:
        self.database = database
        self.clock = clock
        self.cache_ttl_s = cache_ttl_s
        self._snapshot: Snapshot[dict[str, RateLimits]] = Snapshot(self.list, {}, cache_ttl_s)

    async def limits_for(self, key_id: str, org_id: str) -> RateLimits:
        snapshot = await self._snapshot.get()
        return (snapshot.get(f"key:{key_id}") or snapshot.get(f"org:{org_id}")
                or snapshot.get("default") or NO_LIMITS)

    def list(self) -> dict[str, RateLimits]:
        with self.database.read() as connection:
            return {row.subject: RateLimits(row.requests_per_min, row.tokens_per_min, row.concurrent_max)
                    for row in connection.execute(select(gateway_rate_limits))}

    def put(self, subject: str, data: dict[str, Any]) -> RateLimits:
        if not _SUBJECT.match(subject):
            raise InvalidInput("subject must be default, key:<key id> or org:<org id>", param="subject")
        values: dict[str, int | None] = {}
        for name in ("requests_per_min", "tokens_per_min", "concurrent_max"):
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= LIMIT_MAX):
                raise InvalidInput(f"{name} must be an integer from 0 to {LIMIT_MAX} or null", param=name)
            values[name] = value
        unknown = sorted(set(data) - set(values))
        if unknown:
            raise InvalidInput(f"unknown field {unknown[0]!r}", param=unknown[0])
        with self.database.write() as connection:
            connection.execute(delete(gateway_rate_limits).where(gateway_rate_limits.c.subject == subject))
            connection.execute(gateway_rate_limits.insert().values(
                subject=subject, updated_at_us=self.clock.now_us(), **values))
        self._snapshot.invalidate()
        return RateLimits(values["requests_per_min"], values["tokens_per_min"], values["concurrent_max"])

    def remove(self, subject: str) -> None:
        with self.database.write() as connection:
            gone = connection.execute(delete(gateway_rate_limits)
                                      .where(gateway_rate_limits.c.subject == subject)).rowcount
        if not gone:
            raise NotFound(f"no rate limits for {subject!r}", param="subject")
        self._snapshot.invalidate()
