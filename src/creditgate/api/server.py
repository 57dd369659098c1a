"""The application factory uvicorn workers import: ``creditgate.api.server:app_from_env``.

Each worker process builds its own services (database pool, ledger writer) from
``CREDITGATE_DATABASE_URL``; the schema was migrated once by ``creditgate serve`` beforehand.
"""

from __future__ import annotations

from fastapi import FastAPI

from creditgate.api.app import create_app
from creditgate.bootstrap import bootstrap


def app_from_env() -> FastAPI:
    return create_app(bootstrap(migrate=False), close_services_on_shutdown=True)
