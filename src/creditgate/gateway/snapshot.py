"""A table the hot path reads from memory, reloaded in the background before it grows stale.

A value is served for at most ``ttl_s``, so a change made by another process is seen within that
time. Requests do not wait for routine reloads: a reader in the second half of the value's life
starts one in a worker thread and carries on with the current value, so under steady traffic the
value is renewed before it expires and no request pays for a reload. A reader that finds the
value expired (after a quiet spell), or that must see the latest rows (the first read, a change
made by this process), waits for the reload.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Snapshot(Generic[T]):
    def __init__(self, load: Callable[[], T], empty: T, ttl_s: float, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._monotonic = monotonic
        self._value = empty
        self._ttl_s = ttl_s
        self._loaded_at = float("-inf")
        self._must_wait = True
        self._lock = threading.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def get(self) -> T:
        age = self._monotonic() - self._loaded_at
        if self._must_wait or age > self._ttl_s:
            await asyncio.to_thread(self._reload)
        elif age > self._ttl_s / 2 and self._refreshing is None:
            self._refreshing = asyncio.create_task(self._refresh())
        return self._value

    def invalidate(self) -> None:
        """The rows changed: the next reader waits for them."""
        self._must_wait = True

    async def _refresh(self) -> None:
        try:
            await asyncio.to_thread(self._reload)
        except Exception:
            log.exception("reloading a gateway snapshot failed; the next reader waits for it")
        finally:
            self._refreshing = None

    def _reload(self) -> None:
        with self._lock:
            if not self._must_wait and self._monotonic() - self._loaded_at <= self._ttl_s / 2:
                return  # another reader reloaded it meanwhile
            started = self._monotonic()
            self._must_wait = False
            try:
                self._value = self._load()
            except BaseException:
                self._must_wait = True
                raise
            self._loaded_at = started
