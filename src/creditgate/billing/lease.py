"""A database lease: at most one process runs the close job at a time.

A row per lease name says who holds it until when. Taking it is one write transaction (SQLite's
``BEGIN IMMEDIATE`` write lock; on PostgreSQL a row lock, and a primary-key conflict when two
processes insert the first row at once), so two processes never both believe they hold it. A
holder that dies simply lets the lease expire. Expiry uses the injected clock.
"""

from __future__ import annotations

import secrets
from typing import Final

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from creditgate.clock import Clock
from creditgate.storage.database import Database
from creditgate.storage.tables_billing import billing_leases

LEASE_TTL_S_DEFAULT: Final = 300
MICROS_PER_SECOND: Final = 1_000_000


class Lease:
    def __init__(self, database: Database, clock: Clock, name: str, *,
                 ttl_s: int = LEASE_TTL_S_DEFAULT, holder: str | None = None) -> None:
        assert 1 <= ttl_s <= 86_400
        self.database = database
        self.clock = clock
        self.name = name
        self.ttl_s = ttl_s
        self.holder = holder or f"holder_{secrets.token_hex(8)}"

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live holder has it."""
        now = self.clock.now_us()
        expires = now + self.ttl_s * MICROS_PER_SECOND
        try:
            with self.database.write() as connection:
                query = select(billing_leases).where(billing_leases.c.name == self.name)
                if not self.database.is_sqlite:
                    query = query.with_for_update()
                row = connection.execute(query).first()
                if row is None:
                    connection.execute(insert(billing_leases).values(
                        name=self.name, holder=self.holder, expires_at_us=expires))
                    return True
                if row.holder != self.holder and row.expires_at_us > now:
                    return False
                connection.execute(update(billing_leases).where(billing_leases.c.name == self.name)
                                   .values(holder=self.holder, expires_at_us=expires))
                return True
        except IntegrityError:
            return False  # another process inserted the first row a moment earlier

    def release(self) -> None:
        with self.database.write() as connection:
            connection.execute(update(billing_leases).where(
                (billing_leases.c.name == self.name) & (billing_leases.c.holder == self.holder))
                .values(expires_at_us=0))
