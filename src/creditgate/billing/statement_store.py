"""Reading the journal for statements, and keeping the signed statements.

A statement reads only the journal slice it needs: from the previous statement's
``next_low_seq`` to its own ``cut_seq`` (see :mod:`creditgate.billing.statements`), plus the
grants, holds and training jobs those transactions name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from creditgate.billing.periods import Period, label
from creditgate.billing.signing import SigningKey, sign
from creditgate.billing.statements import (
    GrantInfo,
    JournalRow,
    PeriodCut,
    StatementInputs,
    UsageSource,
    build,
)
from creditgate.clock import iso
from creditgate.errors import NotFound
from creditgate.ledger.book import new_id
from creditgate.storage.schema import grants, holds, journal_transactions, orgs
from creditgate.storage.tables_billing import billing_statements, training_jobs

IN_CLAUSE_IDS_MAX: Final = 500
STATEMENT_LIST_MAX: Final = 1000


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), IN_CLAUSE_IDS_MAX):
        yield ordered[start:start + IN_CLAUSE_IDS_MAX]


def load_rows(connection: Any, org_id: str, low_seq: int, cut_seq: int) -> list[JournalRow]:
    table = journal_transactions
    result = connection.execute(select(table.c.seq, table.c.kind, table.c.at_us, table.c.ref,
                                       table.c.result, table.c.entries, table.c.hash)
                                .where((table.c.org_id == org_id) & (table.c.seq >= low_seq)
                                       & (table.c.seq <= cut_seq)).order_by(table.c.seq))
    return [JournalRow(seq=row.seq, kind=row.kind, at_us=row.at_us, ref=row.ref,
                       result=orjson.loads(row.result),
                       entries=tuple((leg[0], leg[1], leg[2]) for leg in orjson.loads(row.entries)),
                       hash=row.hash) for row in result]


def load_grants(connection: Any, org_id: str, rows: Iterable[JournalRow]) -> dict[str, GrantInfo]:
    wanted: set[str] = set()
    for row in rows:
        if row.kind.startswith("grant") and row.ref:
            wanted.add(row.ref)
        wanted.update(grant_id for _, grant_id, _ in row.entries if grant_id)
    found: dict[str, GrantInfo] = {}
    for chunk in _chunks(wanted):
        for row in connection.execute(select(grants).where((grants.c.org_id == org_id) & grants.c.id.in_(chunk))):
            found[row.id] = GrantInfo(id=row.id, kind=row.kind, scope=row.scope, amount=row.amount,
                                      cost_basis=row.cost_basis, currency=row.currency,
                                      expires_at_us=row.expires_at_us, source_grant_id=row.source_grant_id)
    return found


def _tag(metadata: Any, *names: str) -> str | None:
    if not isinstance(metadata, dict):
        return None
    tags: dict[str, Any] = metadata["tags"] if isinstance(metadata.get("tags"), dict) else {}
    for name in names:
        value = metadata.get(name, tags.get(name))
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def load_usage_sources(connection: Any, org_id: str, rows: Iterable[JournalRow]) -> dict[str, UsageSource]:
    """Model, project and purpose of each usage booking. Holds carry the model and their metadata
    (``project_id``/``project``, ``purpose``/``tag``, also inside ``tags``); training debits name
    their job."""
    refs = {row.ref for row in rows if row.ref and any(acc == "usage" for acc, _, _ in row.entries)}
    found: dict[str, UsageSource] = {}
    for chunk in _chunks(refs):
        for row in connection.execute(select(holds.c.id, holds.c.model, holds.c.scope, holds.c.metadata)
                                      .where((holds.c.org_id == org_id) & holds.c.id.in_(chunk))):
            metadata = orjson.loads(row.metadata or "{}")
            found[row.id] = UsageSource(model=row.model, project=_tag(metadata, "project_id", "project"),
                                        purpose=_tag(metadata, "purpose", "tag"), scope=row.scope)
        for row in connection.execute(select(training_jobs.c.id, training_jobs.c.model,
                                             training_jobs.c.project_id)
                                      .where((training_jobs.c.org_id == org_id) & training_jobs.c.id.in_(chunk))):
            found[row.id] = UsageSource(model=row.model, project=row.project_id, purpose="training",
                                        scope="training")
    return found


def last_statement(connection: Any, org_id: str) -> Any:
    return connection.execute(select(billing_statements).where(billing_statements.c.org_id == org_id)
                              .order_by(billing_statements.c.period_end_us.desc()).limit(1)).first()


def statement_for(connection: Any, org_id: str, period_start_us: int) -> Any:
    return connection.execute(select(billing_statements).where(
        (billing_statements.c.org_id == org_id)
        & (billing_statements.c.period_start_us == period_start_us))).first()


def produce(database: Any, org_id: str, timezone: str, period: Period, cut_seq: int,
            key: SigningKey, now_us: int) -> dict[str, Any]:
    """Build, sign and store the statement of ``period`` (once: a second producer reads the first
    one's statement back). Returns the signed document."""
    with database.read() as connection:
        existing = statement_for(connection, org_id, period.start_us)
        if existing is not None:
            return dict(orjson.loads(existing.document))
        previous = last_statement(connection, org_id)
        assert previous is None or previous.period_end_us == period.start_us, "periods close in order"
        low = previous.next_low_seq if previous else 1
        rows = load_rows(connection, org_id, low, cut_seq)
        grant_infos = load_grants(connection, org_id, rows)
        org_name = connection.execute(select(orgs.c.name).where(orgs.c.id == org_id)).scalar_one()
        statement_id = new_id("stm")
        inputs = StatementInputs(
            org_id=org_id, org_name=org_name, statement_id=statement_id, period_index=period.index,
            period_start_us=period.start_us, period_end_us=period.end_us,
            period_label=label(period, timezone), timezone=timezone, cut_seq=cut_seq,
            previous=PeriodCut(previous.period_end_us, previous.cut_seq) if previous else None,
            opening_totals=orjson.loads(previous.totals) if previous else {},
            rows=rows, grants=grant_infos, usage_sources=load_usage_sources(connection, org_id, rows),
            generated_at=iso(now_us) or "",
            extra={"period_start": iso(period.start_us), "period_end": iso(period.end_us)})
    body, closing, next_low = build(inputs)
    document = sign(body, key)
    try:
        with database.write() as connection:
            connection.execute(insert(billing_statements).values(
                id=statement_id, org_id=org_id, period_index=period.index,
                period_start_us=period.start_us, period_end_us=period.end_us, cut_seq=cut_seq,
                next_low_seq=next_low, totals=orjson.dumps(closing).decode(),
                document=orjson.dumps(document).decode(), key_id=key.key_id, created_at_us=now_us))
    except IntegrityError:
        with database.read() as connection:
            return dict(orjson.loads(statement_for(connection, org_id, period.start_us).document))
    return document


def list_statements(database: Any, org_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    limit = max(1, min(limit, STATEMENT_LIST_MAX))
    with database.read() as connection:
        rows = connection.execute(select(billing_statements.c.id, billing_statements.c.period_index,
                                         billing_statements.c.period_start_us,
                                         billing_statements.c.period_end_us, billing_statements.c.cut_seq,
                                         billing_statements.c.key_id, billing_statements.c.created_at_us)
                                  .where(billing_statements.c.org_id == org_id)
                                  .order_by(billing_statements.c.period_start_us.desc()).limit(limit)).all()
    return [{"id": row.id, "period_index": row.period_index, "period_start": iso(row.period_start_us),
             "period_end": iso(row.period_end_us), "cut_seq": row.cut_seq, "key_id": row.key_id,
             "created_at": iso(row.created_at_us)} for row in rows]


def get_document(database: Any, org_id: str, statement_id: str) -> dict[str, Any]:
    with database.read() as connection:
        row = connection.execute(select(billing_statements.c.document).where(
            (billing_statements.c.org_id == org_id) & (billing_statements.c.id == statement_id))).first()
    if row is None:
        raise NotFound(f"statement {statement_id} not found", param="statement_id")
    return dict(orjson.loads(row.document))


def all_totals(database: Any, org_id: str) -> list[dict[str, int]]:
    with database.read() as connection:
        rows = connection.execute(select(billing_statements.c.totals).where(billing_statements.c.org_id == org_id)
                                  .order_by(billing_statements.c.period_start_us)).all()
    return [orjson.loads(row.totals) for row in rows]
