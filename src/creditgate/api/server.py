"""The application factory uvicorn workers import: ``creditgate.api.server:app_from_env``.

Each worker process builds its own services (database pool, ledger writer) from
``CREDITGATE_DATABASE_URL``; the schema was migrated once by ``creditgate serve`` beforehand.
Each worker also runs the in-process billing scheduler; closing a period takes a database
lease, so with several workers or processes exactly one closes each period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from creditgate.api.app import create_app
from creditgate.bootstrap import Services, bootstrap
from creditgate.runtime import freeze_startup_heap


def start_background_jobs(services: Services) -> None:
    billing = services.extras.get("billing")
    if billing is not None:
        from creditgate.billing.scheduler import BillingScheduler

        scheduler = BillingScheduler(billing, chores=housekeeping(services))
        scheduler.start()
        services.extras["billing_scheduler"] = scheduler


def housekeeping(services: Services) -> list[Callable[[], Any]]:
    """Chores the scheduler runs on every pass."""
    from creditgate.usage.ingest import prune_dedup
    from creditgate.usage.records import roll_up_all_pending

    def prune_usage_dedup() -> int:
        return prune_dedup(services.database, services.clock.now_us())

    def roll_up_usage() -> int:
        # Records a gateway process left pending when it stopped without its last pass.
        return roll_up_all_pending(services.database)

    return [prune_usage_dedup, roll_up_usage]


def app_from_env() -> FastAPI:
    services = bootstrap(migrate=False)
    start_background_jobs(services)
    app = create_app(services, close_services_on_shutdown=True)
    freeze_startup_heap()
    return app
