"""The billing facade: the use cases the CLI, the REST API and the scheduler call.

Built once by the composition root (``Services.extras["billing"]``) on the ledger, database and
clock it shares with everything else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from creditgate.billing import close as close_job
from creditgate.billing import keys, statement_store
from creditgate.billing.allowances import Allowances
from creditgate.billing.cycles import Cycle, load_cycle, set_cycle
from creditgate.billing.late_usage import LateUsageDecision, decide_late_usage
from creditgate.billing.lease import Lease
from creditgate.billing.periods import Period, period_at, period_containing
from creditgate.billing.signing import SigningKey, Verification, verify_document
from creditgate.billing.statements import balance_of, totals_after
from creditgate.billing.topup import PaymentProvider, TopUps
from creditgate.billing.training import TrainingJobs
from creditgate.billing.trials import Trials
from creditgate.clock import Clock
from creditgate.ledger.service import Ledger
from creditgate.storage.database import Database
from creditgate.storage.tables_billing import billing_statements

CLOSE_LEASE_NAME = "billing-close"


class Billing:
    def __init__(self, database: Database, ledger: Ledger, clock: Clock, *,
                 payment_provider: PaymentProvider | None = None) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock
        self.allowances = Allowances(database, ledger, clock)
        self.trials = Trials(database, ledger, clock)
        self.topups = TopUps(database, ledger, clock, payment_provider)
        self.training = TrainingJobs(database, ledger, clock)
        self._key: SigningKey | None = None

    # ------------------------------------------------------------------ cycles
    def cycle(self, org_id: str) -> Cycle:
        with self.database.read() as connection:
            return load_cycle(connection, org_id)

    def set_cycle(self, org_id: str, *, kind: str, timezone: str | None = None, anchor_day: int = 1,
                  length_days: int = 30, late_grace_s: int | None = None,
                  late_after_grace: str | None = None) -> Cycle:
        return set_cycle(self.database, org_id, kind=kind, timezone=timezone, anchor_day=anchor_day,
                         length_days=length_days, late_grace_s=late_grace_s,
                         late_after_grace=late_after_grace, now_us=self.clock.now_us())

    def current_period(self, org_id: str) -> Period | None:
        return period_containing(self.cycle(org_id).spec, self.clock.now_us())

    def periods(self, org_id: str, *, count_max: int = 24) -> list[dict[str, Any]]:
        """Closed periods (newest first) and the open one."""
        cycle = self.cycle(org_id)
        closed = {row["period_index"]: row for row in statement_store.list_statements(self.database, org_id,
                                                                                     limit=count_max)}
        current = period_containing(cycle.spec, self.clock.now_us())
        last = current.index if current else -1
        from creditgate.billing.periods import label
        from creditgate.clock import iso

        found = []
        for index in range(last, max(-1, last - count_max), -1):
            period = period_at(cycle.spec, index)
            row = closed.get(index)
            found.append({"index": index, "label": label(period, cycle.spec.timezone),
                          "start": iso(period.start_us), "end": iso(period.end_us),
                          "status": "closed" if row else ("open" if index == last else "due"),
                          "statement_id": row["id"] if row else None})
        return found

    # ------------------------------------------------------------------ closing
    def close_due(self, *, lease_holder: str | None = None) -> close_job.CloseReport:
        lease = Lease(self.database, self.clock, CLOSE_LEASE_NAME, holder=lease_holder)
        return close_job.close_due(self, lease)

    def close_org(self, org_id: str, *, through_start_us: int | None = None) -> list[close_job.CloseOutcome]:
        self.ledger.get_org(org_id)
        return close_job.close_org(self, org_id, through_start_us=through_start_us)

    def signing_key(self) -> SigningKey:
        if self._key is None:
            self._key = keys.signing_key(self.database, self.clock.now_us())
        return self._key

    def public_keys(self) -> list[dict[str, str]]:
        self.signing_key()
        return keys.public_keys(self.database)

    # ------------------------------------------------------------------ statements
    def list_statements(self, org_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        self.ledger.get_org(org_id)
        return statement_store.list_statements(self.database, org_id, limit=limit)

    def statement(self, org_id: str, statement_id: str) -> dict[str, Any]:
        return statement_store.get_document(self.database, org_id, statement_id)

    def verify_statement(self, document: Any, *, trusted: bool = True) -> Verification:
        trusted_keys = tuple(item["public_key"] for item in self.public_keys()) if trusted else ()
        return verify_document(document, trusted_public_keys=trusted_keys)

    def reconcile(self, org_id: str) -> list[str]:
        """Recompute the journal's totals up to the last closed period and compare them with the
        stored statements' closing totals; the problems found (none when they reconcile)."""
        with self.database.read() as connection:
            rows = connection.execute(select(billing_statements.c.cut_seq, billing_statements.c.period_end_us,
                                             billing_statements.c.totals, billing_statements.c.period_index)
                                      .where(billing_statements.c.org_id == org_id)
                                      .order_by(billing_statements.c.period_start_us)).all()
            if not rows:
                return []
            journal = statement_store.load_rows(connection, org_id, 1, rows[-1].cut_seq)
            grant_infos = statement_store.load_grants(connection, org_id, journal)
        import orjson

        from creditgate.billing.statements import PeriodCut, in_cut

        problems = []
        for row in rows:
            cut = PeriodCut(row.period_end_us, row.cut_seq)
            expected = totals_after({}, [tx for tx in journal if in_cut(tx, cut, grant_infos)])
            stored = orjson.loads(row.totals)
            if expected != stored:
                problems.append(f"period {row.period_index}: statement totals {stored} != journal {expected}")
        return problems

    def closing_balance(self, org_id: str) -> int | None:
        totals = statement_store.all_totals(self.database, org_id)
        return balance_of(totals[-1]) if totals else None

    # ------------------------------------------------------------------ late usage
    def on_org_created(self, org_id: str) -> str | None:
        """What billing does for a new organization: grant the trial credits, when configured."""
        return self.trials.grant_if_configured(org_id)

    def check_topups(self) -> int:
        """Open a top-up for every organization whose balance fell below its rule's threshold."""
        from sqlalchemy import select

        from creditgate.storage.tables_billing import billing_topup_rules

        with self.database.read() as connection:
            org_ids = [row[0] for row in connection.execute(
                select(billing_topup_rules.c.org_id).where(billing_topup_rules.c.enabled.is_(True)))]
        return sum(1 for org_id in org_ids if self.topups.check(org_id) is not None)

    def late_usage_decider(self, org_id: str) -> Any:
        """The policy for one organization, read once: a function of an event's time."""
        cycle = self.cycle(org_id)
        with self.database.read() as connection:
            last = statement_store.last_statement(connection, org_id)
        closed_through = last.period_end_us if last is not None else None
        now = self.clock.now_us()
        return lambda event_at_us: decide_late_usage(event_at_us, now, closed_through, cycle.late_usage)

    def late_usage(self, org_id: str, event_at_us: int) -> LateUsageDecision:
        """Apply the documented late-usage policy (billing/late_usage.py) for one event."""
        cycle = self.cycle(org_id)
        with self.database.read() as connection:
            last = statement_store.last_statement(connection, org_id)
        return decide_late_usage(event_at_us, self.clock.now_us(),
                                 last.period_end_us if last is not None else None, cycle.late_usage)
