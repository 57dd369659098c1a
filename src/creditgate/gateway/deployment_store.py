"""Persisting deployments, and the short-lived in-memory view the hot path reads.

Management calls (create, update, delete) use SQLAlchemy. The gateway never queries per request:
it reads a snapshot of all deployments that is reloaded in the background every ``cache_ttl_s``
(see :mod:`creditgate.gateway.snapshot`), so a change made by another process is seen within
about that time and a change made by this process at once.
"""

from __future__ import annotations

import builtins
import hashlib
from typing import Any, Final

import orjson
from sqlalchemy import delete, insert, select, update

from creditgate.clock import Clock
from creditgate.errors import Conflict, InvalidInput, NotFound
from creditgate.gateway import secrets
from creditgate.gateway.deployments import Deployment, decode_model, validate
from creditgate.gateway.local_models import check_model
from creditgate.gateway.prices import PriceList, parse_prices
from creditgate.gateway.snapshot import Snapshot
from creditgate.ledger.book import new_id
from creditgate.storage.database import Database
from creditgate.storage.tables_gateway import deployments

CACHE_TTL_DEFAULT_S: Final = 2.0
DEPLOYMENTS_MAX: Final = 10_000
_SUMMARY_COLUMNS: Final = [column for column in deployments.c if column.name != "model_bytes"]


class DeploymentStore:
    def __init__(self, database: Database, clock: Clock, *, cache_ttl_s: float = CACHE_TTL_DEFAULT_S) -> None:
        self.database = database
        self.clock = clock
        self.cache_ttl_s = cache_ttl_s
        self._snapshot: Snapshot[dict[str, Deployment]] = Snapshot(
            lambda: {deployment.name: deployment for deployment in self.list()}, {}, cache_ttl_s)

    # ------------------------------------------------------------------ management
    def create(self, data: dict[str, Any], *, model_bytes: bytes | None = None) -> Deployment:
        values = validate(data)
        if model_bytes is not None:
            values["model_bytes"] = model_bytes
        if values["backend"] == "onnx":
            if not values.get("model_bytes"):
                raise InvalidInput("an onnx deployment needs its model: upload a file or give model_base64",
                                   param="model_base64")
            check_model(values["model_bytes"], "file" if model_bytes is not None else "model_base64")
        now = self.clock.now_us()
        row = self._columns(values)
        row.update(id=new_id("dep"), created_at_us=now, updated_at_us=now)
        row.setdefault("metadata", "{}")
        with self.database.write() as connection:
            if connection.execute(select(deployments.c.id).where(deployments.c.name == row["name"])).first():
                raise Conflict(f"a deployment named {row['name']!r} already exists", param="name")
            connection.execute(insert(deployments).values(**row))
        self.invalidate()
        return self.get(row["id"])

    def update(self, id_or_name: str, data: dict[str, Any], *, model_bytes: bytes | None = None) -> Deployment:
        # A new model is decoded once and checked before the write starts: loading it can take a
        # while. Only a local deployment's is loaded (a deployment's backend never changes).
        param = "file"
        if model_bytes is None and "model_base64" in data:
            model_bytes, param = decode_model(data["model_base64"]), "model_base64"
            data = {name: value for name, value in data.items() if name != "model_base64"}
        if model_bytes is not None:
            with self.database.read() as connection:
                backend = self._row(connection, id_or_name).backend
            if backend == "onnx":
                check_model(model_bytes, param)
        with self.database.write() as connection:
            current = self._row(connection, id_or_name)
            values = validate(data, current=dict(current._mapping))
            if model_bytes is not None:
                values["model_bytes"] = model_bytes
            row = self._columns(values)
            if "name" in row and row["name"] != current.name and connection.execute(
                    select(deployments.c.id).where(deployments.c.name == row["name"])).first():
                raise Conflict(f"a deployment named {row['name']!r} already exists", param="name")
            row["updated_at_us"] = self.clock.now_us()
            connection.execute(update(deployments).where(deployments.c.id == current.id).values(**row))
        self.invalidate()
        return self.get(current.id)

    def delete(self, id_or_name: str) -> None:
        with self.database.write() as connection:
            current = self._row(connection, id_or_name)
            connection.execute(delete(deployments).where(deployments.c.id == current.id))
        self.invalidate()

    def get(self, id_or_name: str) -> Deployment:
        with self.database.read() as connection:
            return from_row(self._row(connection, id_or_name))

    def list(self) -> list[Deployment]:
        with self.database.read() as connection:
            rows = connection.execute(select(*_SUMMARY_COLUMNS).order_by(deployments.c.name)
                                      .limit(DEPLOYMENTS_MAX))
            return [from_row(row) for row in rows]

    def model_bytes(self, deployment_id: str) -> bytes:
        with self.database.read() as connection:
            row = connection.execute(select(deployments.c.model_bytes)
                                     .where(deployments.c.id == deployment_id)).first()
        if row is None or row[0] is None:
            raise NotFound(f"deployment {deployment_id} has no model", param="deployment")
        return bytes(row[0])

    # ------------------------------------------------------------------ hot path
    async def find(self, name: str) -> Deployment | None:
        """The deployment clients call ``name``, from the snapshot."""
        return (await self._snapshot.get()).get(name)

    async def all(self) -> builtins.list[Deployment]:  # (this class's own list() shadows the type)
        return builtins.list((await self._snapshot.get()).values())

    def invalidate(self) -> None:
        self._snapshot.invalidate()

    # ------------------------------------------------------------------ rows
    @staticmethod
    def _row(connection: Any, id_or_name: str) -> Any:
        row = connection.execute(select(*_SUMMARY_COLUMNS).where(
            (deployments.c.id == id_or_name) | (deployments.c.name == id_or_name))).first()
        if row is None:
            raise NotFound(f"deployment {id_or_name!r} not found", param="deployment")
        return row

    @staticmethod
    def _columns(values: dict[str, Any]) -> dict[str, Any]:
        row = dict(values)
        if "prices" in row:
            row["prices"] = orjson.dumps(row["prices"].to_dict()).decode()
        if "orgs" in row:
            row["orgs"] = orjson.dumps(sorted(row["orgs"])).decode() if row["orgs"] is not None else None
        if "metadata" in row:
            row["metadata"] = orjson.dumps(row["metadata"]).decode()
        if "api_key_plain" in row:
            plain = row.pop("api_key_plain")
            row["api_key_encrypted"] = secrets.encrypt(plain) if plain else None
        if row.get("model_bytes") is not None:
            row["model_sha256"] = hashlib.sha256(row["model_bytes"]).hexdigest()
        return row


def from_row(row: Any) -> Deployment:
    prices: PriceList = parse_prices(orjson.loads(row.prices))
    return Deployment(
        id=row.id, name=row.name, backend=row.backend, kind=row.kind, base_url=row.base_url,
        upstream_model=row.upstream_model, api_key_env=row.api_key_env,
        api_key_encrypted=row.api_key_encrypted, prices=prices, scope=row.scope,
        orgs=frozenset(orjson.loads(row.orgs)) if row.orgs is not None else None,
        timeout_ms=row.timeout_ms, concurrency_max=row.concurrency_max,
        max_tokens_default=row.max_tokens_default, model_sha256=row.model_sha256,
        metadata=orjson.loads(row.metadata or "{}"), created_at_us=row.created_at_us,
        updated_at_us=row.updated_at_us)
