"""Trial credits: granted once to a new organization when configured; never twice.

The configuration is one setting (``trial``): credits, validity in days, scope and an optional
model allow-list. "Never twice" is enforced twice: the ``billing_trials`` primary key (one row
per organization) and the ledger idempotency key ``trial-credits`` on the grant.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from creditgate.billing.settings import get_setting, put_setting
from creditgate.errors import Conflict, IdempotencyConflict, InvalidInput
from creditgate.ledger.credits import check_micros, format_amount, parse_amount
from creditgate.ledger.records import GRANT_SCOPES
from creditgate.ledger.service import check_name
from creditgate.storage.tables_billing import billing_trials

TRIAL_DAYS_MAX: Final = 90
MICROS_PER_DAY: Final = 86_400 * 1_000_000
TRIAL_PRIORITY: Final = 10  # trials burn first: they expire soonest
SETTING: Final = "trial"


def check_trial_config(credits: int, days: int, scope: str, allow: list[str] | None) -> dict[str, Any]:
    check_micros(credits, field="credits")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= TRIAL_DAYS_MAX:
        raise InvalidInput(f"trial days must be from 1 to {TRIAL_DAYS_MAX} (a trial always expires)",
                           param="days")
    if scope not in GRANT_SCOPES:
        raise InvalidInput(f"scope must be one of {', '.join(GRANT_SCOPES)}", param="scope")
    allow_list = sorted({check_name(item, field="allow") for item in allow}) if allow else None
    return {"credits": format_amount(credits), "days": days, "scope": scope, "allow": allow_list,
            "enabled": credits > 0}


class Trials:
    def __init__(self, database: Any, ledger: Any, clock: Any) -> None:
        self.database = database
        self.ledger = ledger
        self.clock = clock

    def configure(self, credits: int, days: int, *, scope: str = "inference",
                  allow: list[str] | None = None) -> dict[str, Any]:
        """Set the trial offered to new organizations; 0 credits turns trials off."""
        config = check_trial_config(credits, days, scope, allow)
        put_setting(self.database, SETTING, config, self.clock.now_us())
        return config

    def config(self) -> dict[str, Any] | None:
        config: dict[str, Any] | None = get_setting(self.database, SETTING)
        return config

    def grant_if_configured(self, org_id: str) -> str | None:
        """Call when an organization is created: grants the trial when one is configured and the
        organization never had one. Returns the grant id, or None."""
        config = self.config()
        if not config or not config.get("enabled"):
            return None
        with self.database.read() as connection:
            if connection.execute(select(billing_trials.c.org_id).where(billing_trials.c.org_id == org_id)).first():
                return None
        return self.grant(org_id)

    def grant(self, org_id: str) -> str:
        config = self.config()
        if not config or not config.get("enabled"):
            raise InvalidInput("no trial is configured (billing trial set)", param="trial")
        now = self.clock.now_us()
        with self.database.read() as connection:
            self.ledger.get_org(org_id, connection=connection)
            if connection.execute(select(billing_trials.c.org_id).where(billing_trials.c.org_id == org_id)).first():
                raise Conflict(f"organization {org_id} already had its trial credits", param="org_id")
        try:
            result = self.ledger.grant(
                org_id, parse_amount(config["credits"]), kind="trial", scope=config["scope"],
                priority=TRIAL_PRIORITY, effective_at_us=now,
                expires_at_us=now + config["days"] * MICROS_PER_DAY, allow=config["allow"],
                rollover={"policy": "none"}, metadata={"trial": True}, idempotency_key="trial-credits")
        except IdempotencyConflict:
            # A concurrent caller granted it a moment earlier (the journal key is per organization).
            raise Conflict(f"organization {org_id} already had its trial credits", param="org_id") from None
        try:
            with self.database.write() as connection:
                connection.execute(insert(billing_trials).values(
                    org_id=org_id, grant_id=result["grant_id"], granted_at_us=now))
        except IntegrityError:
            pass  # recorded by the concurrent caller
        if result.get("replayed"):
            raise Conflict(f"organization {org_id} already had its trial credits", param="org_id")
        return str(result["grant_id"])

