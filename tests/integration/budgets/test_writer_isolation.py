"""One operation the database refuses does not sink the others in its group-commit batch."""

from __future__ import annotations

from creditgate.ledger.book import GrantSpec
from creditgate.ledger.operations import CreateGrant
from creditgate.ledger.service import Ledger
from creditgate.ledger.verify import verify


def test_a_refused_operation_fails_alone(ledger: Ledger) -> None:
    org = ledger.create_org("acme")
    now = ledger.clock.now_us()

    def spec(kind: str) -> GrantSpec:
        return GrantSpec(amount=1_000_000, kind=kind, scope="any", priority=1, effective_at_us=now,
                         expires_at_us=None)

    # 'bogus' passes no service validation here on purpose: the schema's CHECK refuses it.
    futures = [ledger.writer.submit(CreateGrant(org.id, None, spec=spec(kind)))
               for kind in ("purchase", "bogus", "promotional", "purchase")]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=60))
        except Exception as error:  # noqa: BLE001 - the refused one: either driver's own error type
            outcomes.append(error)
    assert [isinstance(outcome, dict) for outcome in outcomes] == [True, False, True, True]
    assert ledger.balance(org.id).available == 3_000_000
    assert verify(ledger.database).ok
