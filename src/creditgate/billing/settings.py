"""Instance-wide billing settings as small JSON values (trial offer, defaults)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import insert, select, update

from creditgate.storage.tables_billing import billing_settings


def get_setting(database: Any, name: str) -> Any:
    with database.read() as connection:
        row = connection.execute(select(billing_settings.c.value).where(billing_settings.c.name == name)).first()
    return orjson.loads(row.value) if row else None


def put_setting(database: Any, name: str, value: Any, now_us: int) -> None:
    text = orjson.dumps(value).decode()
    with database.write() as connection:
        changed = connection.execute(update(billing_settings).where(billing_settings.c.name == name)
                                     .values(value=text, updated_at_us=now_us)).rowcount
        if not changed:
            connection.execute(insert(billing_settings).values(name=name, value=text, updated_at_us=now_us))
