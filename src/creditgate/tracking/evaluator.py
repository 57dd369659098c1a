"""The evaluator: turns ledger and billing changes into events, and checks alert rules.

One :meth:`Evaluator.tick` (every second from the tracking worker, or stepped by tests):

1. **journal events** — for each organization with a webhook endpoint whose journal moved past
   its cursor (``orgs.chain_seq`` against ``tracking_cursors.journal_seq``: one indexed read for
   all of them), read the new journal rows (at most ``JOURNAL_ROWS_PER_TICK_MAX``) and record
   ``grant.created``/``topup.completed``/``grant.expired`` events, advancing the cursor in the
   same transaction;
2. **period close** — record ``period.closed`` for statements past the cursor;
3. **alert rules** — read each organization with enabled rules whose journal moved since this
   process last looked, or whose last look is older than ``REEVALUATE_INTERVAL_US`` (time alone
   moves expiries and forecasts); forecast kinds use a forecast cached per (organization,
   journal position) for at most ``FORECAST_CACHE_US``.

The gateway's hot path is untouched: the evaluator reads committed state only.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from sqlalchemy import select, update

from creditgate.storage.schema import grants, journal_transactions, orgs
from creditgate.storage.tables_billing import billing_statements
from creditgate.storage.tables_tracking import tracking_cursors
from creditgate.tracking.alerts import FORECAST_KINDS, AlertRules, Observation, Rule, read
from creditgate.tracking.events import record_event

log = logging.getLogger(__name__)

JOURNAL_ROWS_PER_TICK_MAX: Final = 1_000
ORGS_PER_TICK_MAX: Final = 500
REEVALUATE_INTERVAL_US: Final = 60_000_000
FORECAST_CACHE_US: Final = 60_000_000


class _CursorMoved(Exception):
    """Another evaluator advanced the cursor first: roll this transaction back."""


class Evaluator:
    def __init__(self, tracking: Any) -> None:
        self.tracking = tracking
        self.database = tracking.database
        self.clock = tracking.clock
        self.rules = AlertRules(self.database, self.clock)
        self._looked: dict[str, tuple[int, int]] = {}  # org id -> (chain seq, at)

    def tick(self) -> dict[str, int]:
        report = {"events": self._journal_events() + self._period_events(), "alerts": self._alerts()}
        return report

    # ------------------------------------------------------------------ events from the journal
    def _journal_events(self) -> int:
        with self.database.read() as connection:
            moved = connection.execute(select(orgs.c.id, orgs.c.chain_seq, tracking_cursors.c.journal_seq)
                                       .join(tracking_cursors, tracking_cursors.c.org_id == orgs.c.id)
                                       .where(orgs.c.chain_seq > tracking_cursors.c.journal_seq)
                                       .limit(ORGS_PER_TICK_MAX)).all()
        recorded = 0
        for org_id, _, cursor in moved:
            try:
                recorded += self._org_journal_events(org_id, cursor)
            except _CursorMoved:
                continue
        return recorded

    def _org_journal_events(self, org_id: str, cursor: int) -> int:
        now = self.clock.now_us()
        table = journal_transactions
        recorded = 0
        with self.database.write() as connection:
            rows = connection.execute(select(table.c.seq, table.c.kind, table.c.at_us, table.c.ref, table.c.result)
                                      .where((table.c.org_id == org_id) & (table.c.seq > cursor))
                                      .order_by(table.c.seq).limit(JOURNAL_ROWS_PER_TICK_MAX)).all()
            if not rows:
                return 0
            grant_rows = {row.id: row for row in connection.execute(
                select(grants.c.id, grants.c.kind, grants.c.scope, grants.c.expires_at_us, grants.c.currency)
                .where(grants.c.id.in_({row.ref for row in rows if row.ref and row.kind.startswith("grant")})))}
            for row in rows:
                event = _journal_event(row, grant_rows.get(row.ref))
                if event is not None and record_event(connection, org_id, event[0], f"journal:{org_id}:{row.seq}",
                                                      event[1], row.at_us):
                    recorded += 1
            changed = connection.execute(update(tracking_cursors).where(
                (tracking_cursors.c.org_id == org_id) & (tracking_cursors.c.journal_seq == cursor))
                .values(journal_seq=rows[-1].seq, updated_at_us=now)).rowcount
            if not changed:
                raise _CursorMoved
        return recorded

    def _period_events(self) -> int:
        with self.database.read() as connection:
            rows = connection.execute(select(billing_statements.c.id, billing_statements.c.org_id,
                                             billing_statements.c.period_index, billing_statements.c.period_start_us,
                                             billing_statements.c.period_end_us, billing_statements.c.created_at_us)
                                      .join(tracking_cursors, tracking_cursors.c.org_id == billing_statements.c.org_id)
                                      .where(billing_statements.c.period_end_us > tracking_cursors.c.statement_end_us)
                                      .order_by(billing_statements.c.period_end_us).limit(ORGS_PER_TICK_MAX)).all()
        recorded = 0
        from creditgate.clock import iso

        for row in rows:
            with self.database.write() as connection:
                if record_event(connection, row.org_id, "period.closed", f"statement:{row.id}",
                                {"statement_id": row.id, "period_index": row.period_index,
                                 "period_start": iso(row.period_start_us), "period_end": iso(row.period_end_us)},
                                row.created_at_us):
                    recorded += 1
                connection.execute(update(tracking_cursors).where(
                    (tracking_cursors.c.org_id == row.org_id)
                    & (tracking_cursors.c.statement_end_us < row.period_end_us)).values(
                    statement_end_us=row.period_end_us))
        return recorded

    # ------------------------------------------------------------------ alert rules
    def _alerts(self) -> int:
        rules = self.rules.enabled_rules()
        if not rules:
            return 0
        by_org: dict[str, list[Rule]] = {}
        for rule in rules:
            by_org.setdefault(rule.org_id, []).append(rule)
        with self.database.read() as connection:
            seqs = dict(connection.execute(select(orgs.c.id, orgs.c.chain_seq).where(
                orgs.c.id.in_(list(by_org)[:ORGS_PER_TICK_MAX]))).all())
        now = self.clock.now_us()
        transitions = 0
        for org_id, seq in seqs.items():
            looked = self._looked.get(org_id)
            if looked is not None and looked[0] == seq and now - looked[1] < REEVALUATE_INTERVAL_US:
                continue
            try:
                transitions += self.evaluate_org(org_id, by_org[org_id])
            except Exception:  # one organization's failure must not stop the others' alerts
                log.exception("evaluating alert rules of %s failed", org_id)
                continue
            self._looked[org_id] = (seq, now)
        return transitions

    def evaluate_org(self, org_id: str, rules: list[Rule]) -> int:
        balance = self.tracking.services.ledger.balance(org_id)
        forecast = None
        if any(rule.kind in FORECAST_KINDS for rule in rules):
            forecast = self.tracking.forecast(org_id, max_age_us=FORECAST_CACHE_US)
        budgets = tuple(self.tracking.services.ledger.list_budgets(org_id)) if any(
            rule.kind == "budget_used" for rule in rules) else ()
        observation = Observation(available=balance.available, forecast=forecast, budgets=budgets)
        return sum(1 for rule in rules if self.rules.apply(rule, read(rule, observation)) is not None)


def _journal_event(row: Any, grant: Any) -> tuple[str, dict[str, Any]] | None:
    result = orjson.loads(row.result)
    from creditgate.clock import iso
    from creditgate.ledger.credits import format_amount

    if row.kind == "grant" and grant is not None:
        data = {"grant_id": row.ref, "kind": grant.kind, "scope": grant.scope,
                "amount": format_amount(int(result.get("amount", 0))), "expires_at": iso(grant.expires_at_us)}
        return ("topup.completed" if grant.kind == "purchase" else "grant.created"), data
    if row.kind in ("grant_expire", "grant_rollover"):
        return "grant.expired", {"grant_id": row.ref, "lost": format_amount(int(result.get("lost", 0))),
                                 "rolled_over": format_amount(int(result.get("rolled", 0))),
                                 "cost_basis_lost": format_amount(int(result.get("cost_basis_lost", 0))),
                                 "currency": grant.currency if grant is not None else None}
    return None
