"""Invoice inputs are checked before anything moves: a payment confirmation refused for its
provider_ref grants no credits, and an unknown invoice status is refused by the use case and by
the CLI (non-zero exit, one line naming --status) rather than answering an empty list."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from creditgate.bootstrap import bootstrap
from creditgate.cli.main import app
from creditgate.clock import ManualClock
from creditgate.errors import Conflict, InvalidInput
from tests.integration.billing.helpers import credits


@pytest.fixture
def org_db(sqlite_url: str) -> tuple[str, str]:
    services = bootstrap(sqlite_url, clock=ManualClock())
    org = services.ledger.create_org("invoices")
    services.close()
    return sqlite_url, org.id


def test_a_refused_provider_ref_grants_nothing(org_db: tuple[str, str]) -> None:
    db, org_id = org_db
    services = bootstrap(db, clock=ManualClock())
    try:
        topups = services.extras["billing"].topups
        invoice = topups.create_invoice(org_id, credits=credits("10"), price=credits("1"), idempotency_key="buy-1")
        for bad in ("x\x00", "a\nb", "r" * 201):
            with pytest.raises(InvalidInput) as raised:
                topups.confirm_payment(org_id, invoice["id"], provider_ref=bad)
            assert raised.value.param == "provider_ref"
        assert services.ledger.balance(org_id).available == 0
        assert topups.get_invoice(org_id, invoice["id"])["status"] == "open"
        paid = topups.confirm_payment(org_id, invoice["id"], provider_ref="pay_1")
        assert (paid["status"], paid["provider_ref"]) == ("paid", "pay_1")
        assert services.ledger.balance(org_id).available == credits("10")
    finally:
        services.close()


def test_an_unknown_invoice_status_is_refused(org_db: tuple[str, str]) -> None:
    db, org_id = org_db
    services = bootstrap(db, clock=ManualClock())
    try:
        topups = services.extras["billing"].topups
        with pytest.raises(InvalidInput) as raised:
            topups.list_invoices(org_id, status="weird")
        assert raised.value.param == "status"
        assert topups.list_invoices(org_id, status="open") == []
    finally:
        services.close()
    result = CliRunner().invoke(app, ["billing", "invoice", "list", org_id, "--status", "weird", "--db", db])
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidInput) and "--status" in result.exception.message
    listed = CliRunner().invoke(app, ["billing", "invoice", "list", org_id, "--status", "open", "--db", db])
    assert listed.exit_code == 0, listed.output


def test_the_cli_says_so_in_one_line(org_db: tuple[str, str]) -> None:
    db, org_id = org_db
    done = subprocess.run([sys.executable, "-m", "creditgate.cli.main", "billing", "invoice", "list", org_id,
                           "--status", "weird", "--db", db], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "--status" in done.stderr
    assert done.stdout.strip() == ""


def test_an_invoice_voided_while_it_is_being_confirmed_keeps_no_credits(org_db: tuple[str, str]) -> None:
    """Confirmation grants first and marks the invoice paid after (two transactions): a void
    landing in between must take the credits back, not leave them on a void invoice."""
    db, org_id = org_db
    services = bootstrap(db, clock=ManualClock())
    try:
        topups = services.extras["billing"].topups
        invoice = topups.create_invoice(org_id, credits=credits("10"), price=credits("1"), idempotency_key="buy-2")
        grant = services.ledger.grant

        def grant_then_void(*args: object, **kwargs: object) -> object:
            granted = grant(*args, **kwargs)  # type: ignore[arg-type]
            topups.void_invoice(org_id, invoice["id"])  # another request, just in between
            return granted

        services.ledger.grant = grant_then_void  # type: ignore[method-assign]
        with pytest.raises(Conflict, match="voided while"):
            topups.confirm_payment(org_id, invoice["id"], provider_ref="pay_2")
        services.ledger.grant = grant  # type: ignore[method-assign]
        assert topups.get_invoice(org_id, invoice["id"])["status"] == "void"
        assert services.ledger.balance(org_id).available == 0
        with pytest.raises(Conflict, match="void"):  # and a retried confirmation grants nothing
            topups.confirm_payment(org_id, invoice["id"], provider_ref="pay_2")
        assert services.ledger.balance(org_id).available == 0
    finally:
        services.close()
