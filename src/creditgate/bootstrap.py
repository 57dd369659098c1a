"""The composition root: the one place that builds and wires creditgate's parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from creditgate.clock import Clock, SystemClock
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database, database_url_from_env
from creditgate.storage.migrate import upgrade


@dataclass
class Services:
    database: Database
    clock: Clock
    ledger: Ledger
    # Parts added by later layers (pricing catalog, gateway, billing, tracking) register here.
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for extra in reversed(list(self.extras.values())):
            closer = getattr(extra, "close", None)
            if callable(closer):
                closer()
        self.ledger.close()
        self.database.dispose()


def bootstrap(database_url: str | None = None, *, clock: Clock | None = None,
              migrate: bool = True) -> Services:
    database = Database(database_url_from_env(database_url))
    if migrate:
        upgrade(database)
    clock = clock or SystemClock()
    services = Services(database=database, clock=clock, ledger=Ledger(database, clock))
    from creditgate.billing.service import Billing

    # Billing (cycles, close, statements, top-ups, training); its scheduler is started by serve.
    services.extras["billing"] = Billing(database, services.ledger, clock)
    return services
