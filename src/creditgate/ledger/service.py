"""Ledger use cases: the library API that the CLI, the REST API and the gateway call.

Writes go through the group-commit writer; reads see committed state directly.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import insert, select

from creditgate.clock import Clock, SystemClock, zone
from creditgate.errors import Conflict, IdempotencyConflict, InvalidInput, NotFound
from creditgate.ledger import journal
from creditgate.ledger.book import GrantSpec, new_id
from creditgate.ledger.credits import MICROS_MAX, check_micros
from creditgate.ledger.group_commit import GroupCommitWriter
from creditgate.ledger.loop_commit import LoopCommitter
from creditgate.ledger.operations import (
    CreateGrant,
    Debit,
    ExpireDue,
    Operation,
    Post,
    Reserve,
    SetBudget,
    Void,
    VoidGrant,
)
from creditgate.ledger.records import (
    GRANT_KINDS,
    GRANT_SCOPES,
    USAGE_SCOPES,
    Budget,
    Grant,
    Hold,
    Org,
)
from creditgate.storage import ledger_store
from creditgate.storage.database import Database
from creditgate.storage.schema import (
    grants,
    holds,
    idempotency_keys,
    journal_transactions,
    orgs,
    projects,
)

HOLD_TTL_DEFAULT_S: Final = 300
HOLD_TTL_MAX_S: Final = 7 * 86_400
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 200
NAME_LENGTH_MAX: Final = 200
# Column widths of journal_transactions.ref and holds.model: PostgreSQL enforces them, and a
# database error would fail every other operation of the same group-commit batch.
REF_LENGTH_MAX: Final = 80
MODEL_LENGTH_MAX: Final = 200
PRIORITY_MAX: Final = 1_000_000
JOURNAL_PAGE_SIZE_MAX: Final = 1000
METADATA_BYTES_MAX: Final = 8192
_NAME_PATTERN: Final = re.compile(r"^[\w .:@/+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Balance:
    org_id: str
    available: int
    pending: int
    debt: int
    grants: tuple[Grant, ...]


class Ledger:
    def __init__(self, database: Database, clock: Clock | None = None) -> None:
        self.database = database
        self.clock = clock or SystemClock()
        self.writer = GroupCommitWriter(database, self.clock)
        self._loop_committers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopCommitter] = (
            weakref.WeakKeyDictionary())

    def close(self) -> None:
        self.writer.close()

    # -------------------------------------------------------------- executing
    def execute(self, operation: Operation) -> dict[str, Any]:
        return self.writer.submit(operation).result()

    async def execute_async(self, operation: Operation, *, inline: bool = False,
                            defer_if: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Run ``operation`` from an event loop. With ``inline=True`` (on SQLite) the loop commits
        the operations of its current turn itself (see :mod:`creditgate.ledger.loop_commit`);
        otherwise the writer thread does. ``defer_if`` (inline only) may leave the operation
        out when its batch commits: the answer is then ``loop_commit.DEFERRED``."""
        if self.commits_on_loop(inline=inline):
            return await self._loop_committer().submit(operation, defer_if=defer_if)
        return await self.writer.submit_async(operation)

    def commits_on_loop(self, *, inline: bool) -> bool:
        """Whether ``execute_async(inline=inline)`` commits on the caller's event loop (SQLite)
        rather than on the writer thread."""
        return inline and self.writer.inline_enabled

    def _loop_committer(self) -> LoopCommitter:
        loop = asyncio.get_running_loop()
        committer = self._loop_committers.get(loop)
        if committer is None:
            committer = self._loop_committers[loop] = LoopCommitter(self.writer)
        return committer

    # -------------------------------------------------------------- organizations
    def create_org(self, name: str, *, overdraft_limit: int = 0, timezone: str = "UTC",
                   idempotency_key: str | None = None, org_id: str | None = None) -> Org:
        name = check_name(name)
        check_micros(overdraft_limit, field="overdraft_limit")
        zone(timezone)  # statements compute the organization's billing periods in this zone
        params = {"name": name, "overdraft_limit": overdraft_limit, "timezone": timezone}
        with self.database.write() as connection:
            replay = _replay(connection, "orgs", idempotency_key, "create_org", params)
            if replay is not None:
                return self.get_org(replay["org_id"], connection=connection)
            if connection.execute(select(orgs.c.id).where(orgs.c.name == name)).first():
                raise Conflict(f"an organization named {name!r} already exists", param="name")
            org = Org(id=org_id or new_id("org"), name=name, created_at_us=self.clock.now_us(),
                      overdraft_limit=overdraft_limit)
            connection.execute(insert(orgs).values(
                id=org.id, name=org.name, created_at_us=org.created_at_us,
                overdraft_limit=overdraft_limit, chain_head=org.chain_head, timezone=timezone))
            _remember(connection, "orgs", idempotency_key, "create_org", params, {"org_id": org.id},
                      self.clock.now_us())
            return org

    def get_org(self, org_id: str, *, connection: Any = None) -> Org:
        def load(conn: Any) -> Org:
            row = conn.execute(ledger_store.org_select().where(orgs.c.id == org_id)).first()
            if row is None:
                raise NotFound(f"organization {org_id} not found", param="org_id")
            return ledger_store.org_from_row(row)
        if connection is not None:
            return load(connection)
        with self.database.read() as conn:
            return load(conn)

    def find_org(self, id_or_name: str) -> Org:
        with self.database.read() as conn:
            row = conn.execute(ledger_store.org_select().where(
                (orgs.c.id == id_or_name) | (orgs.c.name == id_or_name))).first()
        if row is None:
            raise NotFound(f"organization {id_or_name!r} not found", param="org")
        return ledger_store.org_from_row(row)

    def list_orgs(self, *, limit: int = 100, after: str | None = None) -> list[Org]:
        query = ledger_store.org_select().order_by(orgs.c.id).limit(min(limit, JOURNAL_PAGE_SIZE_MAX))
        if after:
            query = query.where(orgs.c.id > after)
        with self.database.read() as conn:
            return [ledger_store.org_from_row(row) for row in conn.execute(query)]

    def set_overdraft_limit(self, org_id: str, limit: int) -> None:
        check_micros(limit, field="overdraft_limit")
        with self.database.write() as connection:
            org = self.get_org(org_id, connection=connection)
            if limit < org.debt_total:
                raise InvalidInput("overdraft_limit is below the current debt", param="overdraft_limit")
            connection.execute(orgs.update().where(orgs.c.id == org_id).values(overdraft_limit=limit))

    def create_project(self, org_id: str, name: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        name = check_name(name)
        params = {"org_id": org_id, "name": name}
        with self.database.write() as connection:
            self.get_org(org_id, connection=connection)
            replay = _replay(connection, org_id, idempotency_key, "create_project", params)
            if replay is not None:
                return replay  # type: ignore[no-any-return]
            existing = connection.execute(select(projects.c.id).where(
                (projects.c.org_id == org_id) & (projects.c.name == name))).first()
            if existing:
                raise Conflict(f"project {name!r} already exists", param="name")
            project = {"id": new_id("prj"), "org_id": org_id, "name": name,
                       "created_at_us": self.clock.now_us()}
            connection.execute(insert(projects).values(**project))
            _remember(connection, org_id, idempotency_key, "create_project", params, project,
                      self.clock.now_us())
            return project

    def list_projects(self, org_id: str) -> list[dict[str, Any]]:
        with self.database.read() as conn:
            rows = conn.execute(select(projects).where(projects.c.org_id == org_id).order_by(projects.c.name))
            return [dict(row._mapping) for row in rows]

    # -------------------------------------------------------------- credit operations
    def grant(self, org_id: str, amount: int, *, kind: str = "purchase", scope: str = "any",
              priority: int = 100, effective_at_us: int | None = None, expires_at_us: int | None = None,
              cost_basis: int = 0, currency: str = "USD", allow: Iterable[str] | None = None,
              source_grant_id: str | None = None, rollover: dict[str, Any] | None = None,
              metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> dict[str, Any]:
        check_micros(amount, field="credits", allow_zero=False)
        check_micros(cost_basis, field="cost_basis")
        if kind not in GRANT_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(GRANT_KINDS)}", param="kind")
        if scope not in GRANT_SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(GRANT_SCOPES)}", param="scope")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= PRIORITY_MAX:
            raise InvalidInput(f"priority must be an integer from 0 to {PRIORITY_MAX}", param="priority")
        if not re.fullmatch(r"[A-Z]{3}", currency or ""):
            raise InvalidInput("currency must be a three-letter ISO 4217 code such as USD", param="currency")
        effective = effective_at_us if effective_at_us is not None else self.clock.now_us()
        if expires_at_us is not None and expires_at_us <= effective:
            # Say what it was compared with: without effective_at the grant starts now.
            raise InvalidInput("expires_at must be after effective_at" if effective_at_us is not None
                               else "expires_at must be in the future (after now)", param="expires_at")
        allow_set = frozenset(check_name(item, field="allow") for item in allow) if allow is not None else None
        if allow_set is not None and not allow_set:
            raise InvalidInput("allow must name at least one model or meter, or be omitted", param="allow")
        spec = GrantSpec(amount=amount, kind=kind, scope=scope, priority=priority,
                         effective_at_us=effective, expires_at_us=expires_at_us, cost_basis=cost_basis,
                         currency=currency, allow=allow_set, source_grant_id=source_grant_id,
                         rollover=_json_text(rollover, "rollover") if rollover is not None else None,
                         metadata=_json_text(metadata or {}, "metadata"))
        return self.execute(CreateGrant(org_id, check_key(idempotency_key), spec=spec,
                                        effective_at_given=effective_at_us is not None))

    def void_grant(self, org_id: str, grant_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self.execute(VoidGrant(org_id, check_key(idempotency_key), grant_id=grant_id))

    def reserve_operation(self, org_id: str, amount: int, *, scope: str = "inference",
                          ttl_s: int = HOLD_TTL_DEFAULT_S, model: str | None = None,
                          subjects: Iterable[str] = (), metadata: dict[str, Any] | None = None,
                          idempotency_key: str | None = None,
                          budget_subjects: Iterable[str] = ()) -> Reserve:
        check_micros(amount, field="credits", allow_zero=False)
        check_usage_scope(scope)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= HOLD_TTL_MAX_S:
            raise InvalidInput(f"ttl must be from 1 to {HOLD_TTL_MAX_S} seconds", param="ttl")
        check_text(model, "model", MODEL_LENGTH_MAX)
        subject_tuple = tuple(subjects) or ((model,) if model else ())
        return Reserve(org_id, check_key(idempotency_key), amount=amount, scope=scope,
                       ttl_us=ttl_s * 1_000_000, subjects=subject_tuple, model=model,
                       metadata=_json_text(metadata or {}, "metadata"),
                       budget_subjects=tuple(budget_subjects))

    def reserve(self, org_id: str, amount: int, **options: Any) -> dict[str, Any]:
        return self.execute(self.reserve_operation(org_id, amount, **options))

    def post(self, org_id: str, hold_id: str, actual: int, *, idempotency_key: str | None = None) -> dict[str, Any]:
        check_micros(actual, field="actual")
        return self.execute(Post(org_id, check_key(idempotency_key), hold_id=hold_id, actual=actual))

    def void(self, org_id: str, hold_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return self.execute(Void(org_id, check_key(idempotency_key), hold_id=hold_id))

    def debit_operation(self, org_id: str, amount: int, *, scope: str = "inference",
                        subjects: Iterable[str] = (), ref: str | None = None,
                        idempotency_key: str | None = None,
                        budget_subjects: Iterable[str] = (), budgets_refuse: bool = True) -> Debit:
        check_micros(amount, field="credits", allow_zero=False)
        check_usage_scope(scope)
        check_text(ref, "ref", REF_LENGTH_MAX)
        return Debit(org_id, check_key(idempotency_key), amount=amount, scope=scope,
                     subjects=tuple(subjects), ref=ref, budget_subjects=tuple(budget_subjects),
                     budgets_refuse=budgets_refuse)

    def debit(self, org_id: str, amount: int, **options: Any) -> dict[str, Any]:
        return self.execute(self.debit_operation(org_id, amount, **options))

    def set_budget(self, org_id: str, subject: str, cap: int, *, mode: str = "hard", period: str = "month",
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Give a project or key (``project:<id>`` / ``key:<id>``) a credit budget per period."""
        from creditgate.ledger.budgets import BUDGET_MODES, BUDGET_PERIODS

        if not isinstance(subject, str) or not re.fullmatch(r"(project|key):[A-Za-z0-9_]{1,40}", subject):
            raise InvalidInput("subject must be project:<project id> or key:<key id>", param="subject")
        check_micros(cap, field="cap")
        if mode not in BUDGET_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(BUDGET_MODES)}", param="mode")
        if period not in BUDGET_PERIODS:
            raise InvalidInput(f"period must be one of {', '.join(BUDGET_PERIODS)}", param="period")
        return self.execute(SetBudget(org_id, check_key(idempotency_key), subject=subject, cap=cap,
                                      mode=mode, period=period))

    def list_budgets(self, org_id: str) -> list[Budget]:
        from creditgate.ledger.budgets import current
        from creditgate.storage.schema import budgets

        now = self.clock.now_us()
        with self.database.read() as conn:
            self.get_org(org_id, connection=conn)
            return [current(ledger_store.budget_from_row(row), now) for row in conn.execute(
                ledger_store.budget_select().where(budgets.c.org_id == org_id).order_by(budgets.c.subject))]

    def expire_due(self, org_id: str | None = None) -> int:
        """Book every expiry that is due (holds past their ttl, grants past their expiry)."""
        now = self.clock.now_us()
        if org_id is not None:
            org_ids = [org_id]
        else:
            with self.database.read() as conn:
                due_grants = select(grants.c.org_id).where(
                    (grants.c.status == "active") & (grants.c.expires_at_us <= now))
                due_holds = select(holds.c.org_id).where(
                    (holds.c.status == "pending") & (holds.c.expires_at_us <= now))
                org_ids = sorted({row[0] for row in conn.execute(due_grants.union(due_holds))})
        futures = [self.writer.submit(ExpireDue(org, None)) for org in org_ids]
        return sum(future.result()["expired"] for future in futures)

    # -------------------------------------------------------------- reads
    def balance(self, org_id: str, *, scope: str | None = None) -> Balance:
        now = self.clock.now_us()
        with self.database.read() as conn:
            org = self.get_org(org_id, connection=conn)
            grant_rows = [ledger_store.grant_from_row(row) for row in conn.execute(
                ledger_store.grant_select().where((grants.c.org_id == org_id)
                                     & ((grants.c.status == "active") | (grants.c.held > 0)))
                .order_by(grants.c.priority, grants.c.created_at_us))]
            stale = [ledger_store.hold_from_row(row) for row in conn.execute(
                ledger_store.hold_select().where((holds.c.org_id == org_id) & (holds.c.status == "pending")
                                    & (holds.c.expires_at_us <= now)))]
        # Holds past their ttl release their credits even before the writer books it.
        released: dict[str, int] = {}
        for hold in stale:
            for grant_id, amount in hold.legs:
                released[grant_id] = released.get(grant_id, 0) + amount
        live = []
        pending = 0
        for grant in grant_rows:
            back = released.get(grant.id, 0)
            grant = grant._replace(held=grant.held - back)
            pending += grant.held
            live.append(grant)
        available = sum(g.free for g in live if g.is_live(now) and (scope is None or g.scope in (scope, "any")))
        debt = org.debt_total if scope is None else org.debt(scope)
        return Balance(org_id=org_id, available=available - debt, pending=pending, debt=debt,
                       grants=tuple(live))

    def list_grants(self, org_id: str, *, include_closed: bool = True) -> list[Grant]:
        query = ledger_store.grant_select().where(grants.c.org_id == org_id)
        if not include_closed:
            query = query.where(grants.c.status == "active")
        with self.database.read() as conn:
            self.get_org(org_id, connection=conn)
            return [ledger_store.grant_from_row(row) for row in
                    conn.execute(query.order_by(grants.c.created_at_us, grants.c.id))]

    def get_grant(self, org_id: str, grant_id: str) -> Grant:
        with self.database.read() as conn:
            row = conn.execute(ledger_store.grant_select().where((grants.c.id == grant_id)
                                                    & (grants.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"grant {grant_id} not found", param="grant_id")
        return ledger_store.grant_from_row(row)

    def get_hold(self, org_id: str, hold_id: str) -> Hold:
        with self.database.read() as conn:
            row = conn.execute(ledger_store.hold_select().where((holds.c.id == hold_id)
                                                   & (holds.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"hold {hold_id} not found", param="hold_id")
        hold = ledger_store.hold_from_row(row)
        if hold.status == "pending" and hold.expires_at_us <= self.clock.now_us():
            return hold._replace(status="expired")
        return hold

    def list_holds(self, org_id: str, *, status: str | None = None, limit: int = 100) -> list[Hold]:
        query = ledger_store.hold_select().where(holds.c.org_id == org_id)
        if status:
            query = query.where(holds.c.status == status)
        query = query.order_by(holds.c.created_at_us.desc()).limit(min(limit, JOURNAL_PAGE_SIZE_MAX))
        with self.database.read() as conn:
            return [ledger_store.hold_from_row(row) for row in conn.execute(query)]

    def journal_page(self, org_id: str, *, after_seq: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        if not 1 <= limit <= JOURNAL_PAGE_SIZE_MAX:
            raise InvalidInput(f"limit must be from 1 to {JOURNAL_PAGE_SIZE_MAX}", param="limit")
        # Sequence numbers are BIGINTs: a larger cursor would fail in the driver (OverflowError
        # on SQLite, a database error on PostgreSQL) instead of finding nothing.
        seq_max = 2**63 - 1
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or not 0 <= after_seq <= seq_max:
            raise InvalidInput(f"after_seq must be a sequence number from 0 to {seq_max}", param="after_seq")
        with self.database.read() as conn:
            self.get_org(org_id, connection=conn)
            tx_rows = list(conn.execute(
                select(journal_transactions).where((journal_transactions.c.org_id == org_id)
                                                   & (journal_transactions.c.seq > after_seq))
                .order_by(journal_transactions.c.seq).limit(limit)))
        return [{"seq": row.seq, "kind": row.kind, "at_us": row.at_us, "ref": row.ref,
                 "idempotency_key": row.idempotency_key, "result": orjson.loads(row.result),
                 "hash": row.hash, "prev_hash": row.prev_hash,
                 "entries": [{"account": account, "grant_id": grant_id, "amount": amount}
                             for account, grant_id, amount in orjson.loads(row.entries)]}
                for row in tx_rows]

# ------------------------------------------------------------------ validation helpers
def check_name(name: Any, *, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name.strip() or "-") or not name.strip():
        raise InvalidInput(f"{field} must be 1 to {NAME_LENGTH_MAX} letters, digits, spaces or . _ : @ / + -",
                           param=field)
    return name.strip()


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidInput(f"idempotency key must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
                           param="idempotency_key")
    return key


def check_text(value: str | None, field: str, length_max: int) -> None:
    """An optional free-text value that is stored in a column of ``length_max`` characters.

    PostgreSQL's text cannot hold NUL (SQLite's can): refused here, so that both backends answer
    alike and the value never reaches a group-commit batch as a database error."""
    if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= length_max
                              or "\x00" in value):
        raise InvalidInput(f"{field} must be 1 to {length_max} characters, without NUL", param=field)


def check_usage_scope(scope: str) -> None:
    if scope not in USAGE_SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(USAGE_SCOPES)}", param="scope")


def _json_text(value: Any, field: str) -> str:
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError as error:
        raise InvalidInput(f"{field} must be JSON: {error}", param=field) from None
    if len(text) > METADATA_BYTES_MAX:
        raise InvalidInput(f"{field} is larger than {METADATA_BYTES_MAX} bytes", param=field)
    return text


def _replay(connection: Any, scope: str, key: str | None, kind: str, params: dict[str, Any]) -> Any:
    if key is None:
        return None
    check_key(key)
    row = connection.execute(select(idempotency_keys).where(
        (idempotency_keys.c.scope == scope) & (idempotency_keys.c.key == key))).first()
    if row is None:
        return None
    if row.fingerprint != journal.fingerprint(kind, params):
        raise IdempotencyConflict(f"idempotency key {key!r} was already used with different inputs",
                                  param="idempotency_key")
    return orjson.loads(row.result)


def _remember(connection: Any, scope: str, key: str | None, kind: str, params: dict[str, Any],
              result: dict[str, Any], now_us: int) -> None:
    if key is None:
        return
    connection.execute(insert(idempotency_keys).values(
        scope=scope, key=key, fingerprint=journal.fingerprint(kind, params),
        result=orjson.dumps(result).decode(), created_at_us=now_us))


assert MICROS_MAX < 2**62
