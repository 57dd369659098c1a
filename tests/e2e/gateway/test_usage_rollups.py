"""A gateway request's usage record is stored with its charge; its hourly rollups follow on the
roll-up thread, and usage queries are exact before and after."""

from __future__ import annotations

from tests.e2e.gateway.conftest import Stack

from creditgate.clock import iso
from creditgate.ledger.credits import format_amount
from creditgate.storage.driver import Driver
from creditgate.usage.records import HOUR_US


def pending(stack: Stack) -> int:
    with stack.services.database.read() as connection:
        [(count,)] = Driver(connection).all("SELECT count(*) FROM usage_records WHERE rollup_pending = 1")
    return int(count)


def test_requests_are_counted_before_and_after_their_rollups_are_written(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, _, secret = stack.org_with_key("acme", "10")
    client = stack.openai(secret)
    usages = [client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=20).usage for _ in range(3)]
    spent = sum(u.prompt_tokens * 150 + u.completion_tokens * 600 for u in usages)  # type: ignore[union-attr]
    stack.usage_rows()  # flushed
    gateway = stack.services.extras["gateway"]
    now = stack.clock.now_us()
    # Whole hours around now: the rollups' part of the query (plus the edges from the records).
    query = {"start": iso(now - 3 * HOUR_US - 1), "end": iso(now + 3 * HOUR_US + 1), "bucket": "day",
             "group_by": "model"}

    def usage() -> list[dict[str, object]]:
        response = stack.admin.get(f"/api/v1/orgs/{org_id}/usage", params=query)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    assert pending(stack) == 3  # the rollups have not been written yet...
    before = usage()
    assert [(row["model"], row["credits"], row["events"]) for row in before] == [
        ("mock-gpt", format_amount(spent), 3)]  # ...yet the query counts them
    assert gateway.roll_ups.run_once() == 3
    assert pending(stack) == 0
    assert usage() == before
