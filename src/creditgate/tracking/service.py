"""The tracking facade: forecasts, alert rules, webhooks, live balance notifications, and the
worker that evaluates and delivers. Built once per process (``services.extras["tracking"]``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Final

from sqlalchemy import select

from creditgate.storage.schema import orgs
from creditgate.tracking.alerts import AlertRules
from creditgate.tracking.evaluator import Evaluator
from creditgate.tracking.forecasting import OrgForecast, org_forecast
from creditgate.tracking.webhooks import Webhooks

log = logging.getLogger(__name__)

EXTRA_NAME: Final = "tracking"
WORKER_INTERVAL_S: Final = 1.0
WORKER_ENV: Final = "CREDITGATE_TRACKING_WORKER"
FORECAST_CACHE_ENTRIES_MAX: Final = 10_000


class LiveBalances:
    """Wakes the dashboard's live streams of an organization right after a gateway request.

    Only a hint: streams also poll, so a request served by another process shows up too.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._lock = threading.Lock()

    def notify(self, org_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(org_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed
                pass

    def subscribe(self, org_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(org_id, set()).add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, org_id: str, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(org_id, set())
            waiters.difference_update({item for item in waiters if item[1] is event})
            if not waiters:
                self._waiters.pop(org_id, None)


class Tracking:
    def __init__(self, services: Any, *, client: Any = None) -> None:
        self.services = services
        self.database = services.database
        self.clock = services.clock
        self.live = LiveBalances()
        self.webhooks = Webhooks(self.database, self.clock, client=client)
        self.rules = AlertRules(self.database, self.clock)
        self.evaluator = Evaluator(self)
        self._forecasts: dict[str, tuple[int, int, OrgForecast]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step_lock = threading.Lock()

    # ------------------------------------------------------------------ use cases
    def forecast(self, org_id: str, *, max_age_us: int = 0) -> OrgForecast:
        """The organization's forecast; reused while its journal has not moved and it is fresh."""
        now = self.clock.now_us()
        with self.database.read() as connection:
            seq = connection.execute(select(orgs.c.chain_seq).where(orgs.c.id == org_id)).scalar()
        cached = self._forecasts.get(org_id)
        if cached is not None and max_age_us and cached[0] == seq and now - cached[1] < max_age_us:
            return cached[2]
        found = org_forecast(self.services, org_id)
        if len(self._forecasts) >= FORECAST_CACHE_ENTRIES_MAX:
            self._forecasts.clear()
        self._forecasts[org_id] = (seq or 0, now, found)
        return found

    def step(self) -> dict[str, int]:
        """One round of evaluation and delivery (the worker calls it every second)."""
        with self._step_lock:
            report = self.evaluator.tick()
            report["deliveries"] = self.webhooks.deliver_due()
            return report

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="creditgate-tracking", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WORKER_INTERVAL_S):
            try:
                self.step()
            except Exception:  # keep evaluating: a database hiccup must not end alerting
                log.exception("tracking step failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.webhooks.close()


def get_tracking(services: Any, *, start_worker: bool | None = None) -> Tracking:
    tracking = services.extras.get(EXTRA_NAME)
    if tracking is None:
        tracking = services.extras[EXTRA_NAME] = Tracking(services)
        if start_worker is None:
            start_worker = os.environ.get(WORKER_ENV, "1") != "0"
        if start_worker:
            tracking.start()
    return tracking  # type: ignore[no-any-return]


def notify_request(services: Any, org_id: str) -> None:
    """The gateway's cheap hook after each settled request: wake the org's live streams."""
    tracking = services.extras.get(EXTRA_NAME)
    if tracking is not None:
        tracking.live.notify(org_id)
