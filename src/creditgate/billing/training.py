"""Training jobs: a model and a dataset reference, reporting GPU-hours as they progress.

Reports are *cumulative* GPU-hours, so a retried report changes nothing and the credits due are
computed on the running total (one rounding, by the one rounding rule, never drifting). Each
report first claims its increment on the job row (a conditional update, so two concurrent
reports never book the same hours twice), then debits it with scope ``training``: only
``training`` and ``any`` grants pay (the ledger's scope matching), then the overdraft allowance.
When the credits run out, what can be booked is booked, the rest is recorded as unbooked on the
job, and the answer says ``stop: true``; later reports are still booked as far as possible.

A report whose running total would cost more than one ledger amount can hold is refused before
the claim, and a claim whose debit then fails is taken back: otherwise the hours would count as
reported while nothing was booked, and a retried report would find nothing left to book.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import insert, select, update

from creditgate.clock import iso
from creditgate.errors import InsufficientCredits, InvalidInput, NotFound
from creditgate.ledger.book import new_id
from creditgate.ledger.credits import (
    MICROS_MAX,
    MICROS_PER_UNIT,
    UNITS_MAX,
    check_micros,
    divide_round_half_up,
    format_amount,
)
from creditgate.ledger.service import check_name
from creditgate.storage.schema import projects
from creditgate.storage.tables_billing import training_jobs
from creditgate.text import CONTROL_CHARACTERS, IDS

DATASET_REF_LENGTH_MAX: Final = 500
GPU_MICRO_HOURS_MAX: Final = 10**15
JOBS_LIST_MAX: Final = 1000


def job_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "org_id": row.org_id, "project_id": row.project_id, "model": row.model,
            "dataset_ref": row.dataset_ref, "credits_per_gpu_hour": format_amount(row.credits_per_gpu_hour),
            "status": row.status, "stop_reason": row.stop_reason,
            "gpu_hours": format_amount(row.gpu_hours_reported),
            "credits_booked": format_amount(row.credits_booked),
            "credits_unbooked": format_amount(row.credits_unbooked), "reports": row.reports,
            "created_at": iso(row.created_at_us), "updated_at": iso(row.updated_at_us)}


class TrainingJobs:
    def __init__(self, database: Any, ledger: Any, clock: Any) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock

    def start(self, org_id: str, *, model: str, dataset_ref: str, credits_per_gpu_hour: int,
              project_id: str | None = None) -> dict[str, Any]:
        model = check_name(model, field="model")
        if not isinstance(dataset_ref, str) or not 0 < len(dataset_ref.strip()) <= DATASET_REF_LENGTH_MAX:
            raise InvalidInput(f"dataset_ref must be 1 to {DATASET_REF_LENGTH_MAX} characters", param="dataset_ref")
        if CONTROL_CHARACTERS.search(dataset_ref.strip()):
            raise InvalidInput("dataset_ref must not contain control characters", param="dataset_ref")
        if project_id is not None and (not isinstance(project_id, str) or not IDS.fullmatch(project_id)):
            raise InvalidInput("project_id must be a project id such as prj_...", param="project_id")
        check_micros(credits_per_gpu_hour, field="credits_per_gpu_hour", allow_zero=False)
        org = self.ledger.get_org(org_id)
        if self.ledger.balance(org_id, scope="training").available <= 0 and org.overdraft_limit <= org.debt_total:
            raise InvalidInput("this organization has no credits usable for training (its grants are "
                               "inference-only); buy or grant training or any-scope credits first",
                               param="org_id")
        now = self.clock.now_us()
        job_id = new_id("trj")
        with self.database.write() as connection:
            # Statements attribute training usage to the job's project, so it must be one of the org's.
            if project_id is not None and connection.execute(select(projects.c.id).where(
                    (projects.c.id == project_id) & (projects.c.org_id == org_id))).first() is None:
                raise NotFound(f"project {project_id} not found", param="project_id")
            connection.execute(insert(training_jobs).values(
                id=job_id, org_id=org_id, project_id=project_id, model=model, dataset_ref=dataset_ref.strip(),
                credits_per_gpu_hour=credits_per_gpu_hour, status="running", created_at_us=now,
                updated_at_us=now))
        return self.get(org_id, job_id)

    def get(self, org_id: str, job_id: str) -> dict[str, Any]:
        with self.database.read() as connection:
            row = connection.execute(select(training_jobs).where(
                (training_jobs.c.id == job_id) & (training_jobs.c.org_id == org_id))).first()
        if row is None:
            raise NotFound(f"training job {job_id} not found", param="job_id")
        return job_dict(row)

    def list(self, org_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        with self.database.read() as connection:
            rows = connection.execute(select(training_jobs).where(training_jobs.c.org_id == org_id)
                                      .order_by(training_jobs.c.created_at_us.desc())
                                      .limit(max(1, min(limit, JOBS_LIST_MAX)))).all()
        return [job_dict(row) for row in rows]

    def report(self, org_id: str, job_id: str, gpu_micro_hours_total: int) -> dict[str, Any]:
        """Report the job's cumulative GPU-hours (micro-hours); returns the job plus ``stop``."""
        check_micros(gpu_micro_hours_total, field="gpu_hours")
        if gpu_micro_hours_total > GPU_MICRO_HOURS_MAX:
            raise InvalidInput("gpu_hours is implausibly large", param="gpu_hours")
        delta, previous_total, model = self._claim(org_id, job_id, gpu_micro_hours_total)
        booked = unbooked = 0
        if delta > 0:
            try:
                booked, unbooked = self._book(org_id, job_id, model, delta, gpu_micro_hours_total)
            except BaseException:
                self._unclaim(job_id, previous_total, gpu_micro_hours_total)
                raise
            now = self.clock.now_us()
            values: dict[str, Any] = {"credits_booked": training_jobs.c.credits_booked + booked,
                                      "credits_unbooked": training_jobs.c.credits_unbooked + unbooked,
                                      "updated_at_us": now}
            if unbooked:
                values.update(status="stopped", stop_reason="out of training credits")
            with self.database.write() as connection:
                connection.execute(update(training_jobs).where(training_jobs.c.id == job_id).values(**values))
        job = self.get(org_id, job_id)
        return {**job, "stop": job["status"] != "running", "booked_now": format_amount(booked),
                "unbooked_now": format_amount(unbooked), "previous_gpu_hours": format_amount(previous_total)}

    def complete(self, org_id: str, job_id: str) -> dict[str, Any]:
        with self.database.write() as connection:
            changed = connection.execute(update(training_jobs).where(
                (training_jobs.c.id == job_id) & (training_jobs.c.org_id == org_id)
                & (training_jobs.c.status == "running")).values(status="completed",
                                                                updated_at_us=self.clock.now_us())).rowcount
        if not changed:
            self.get(org_id, job_id)
        return self.get(org_id, job_id)

    def _claim(self, org_id: str, job_id: str, total: int) -> tuple[int, int, str]:
        """Move the job's reported total forward; the credits the increment costs (0 when the
        report is not newer than what was already counted)."""
        with self.database.write() as connection:
            row = connection.execute(select(training_jobs).where(
                (training_jobs.c.id == job_id) & (training_jobs.c.org_id == org_id))).first()
            if row is None:
                raise NotFound(f"training job {job_id} not found", param="job_id")
            if row.status == "completed":
                raise InvalidInput(f"training job {job_id} is completed", param="job_id")
            if total <= row.gpu_hours_reported:
                return 0, row.gpu_hours_reported, row.model
            rate = row.credits_per_gpu_hour
            # Checked on the running total, not the increment: the job's booked and unbooked sums
            # then stay within one ledger amount, far from the 64-bit columns' limit.
            total_cost = divide_round_half_up(total * rate, MICROS_PER_UNIT)
            if total_cost > MICROS_MAX:
                raise InvalidInput(
                    f"gpu_hours: {format_amount(total)} GPU-hours at {format_amount(rate)} credits each "
                    f"would cost more than the maximum of {UNITS_MAX} credits", param="gpu_hours")
            delta = total_cost - divide_round_half_up(row.gpu_hours_reported * rate, MICROS_PER_UNIT)
            claimed = connection.execute(update(training_jobs).where(
                (training_jobs.c.id == job_id) & (training_jobs.c.gpu_hours_reported == row.gpu_hours_reported))
                .values(gpu_hours_reported=total, reports=row.reports + 1,
                        updated_at_us=self.clock.now_us())).rowcount
            return (delta if claimed else 0), row.gpu_hours_reported, row.model

    def _unclaim(self, job_id: str, previous_total: int, total: int) -> None:
        """Give back a claim whose debit failed, unless a later report has moved past it."""
        with self.database.write() as connection:
            connection.execute(update(training_jobs).where(
                (training_jobs.c.id == job_id) & (training_jobs.c.gpu_hours_reported == total))
                .values(gpu_hours_reported=previous_total, reports=training_jobs.c.reports - 1))

    def _book(self, org_id: str, job_id: str, model: str, amount: int, total: int) -> tuple[int, int]:
        """Debit ``amount``, or as much of it as the training credits and overdraft allow."""
        try:
            self.ledger.debit(org_id, amount, scope="training", ref=job_id, subjects=(model,),
                              idempotency_key=f"training:{job_id}:{total}")
            return amount, 0
        except InsufficientCredits:
            pass
        org = self.ledger.get_org(org_id)
        bookable = (max(self.ledger.balance(org_id, scope="training").available, 0)
                    + max(org.overdraft_limit - org.debt_total, 0))
        part = min(amount, bookable)
        if part > 0:
            try:
                self.ledger.debit(org_id, part, scope="training", ref=job_id, subjects=(model,),
                                  idempotency_key=f"training:{job_id}:{total}:partial")
            except InsufficientCredits:
                part = 0  # something else spent the credits in between; nothing booked
        return part, amount - part
