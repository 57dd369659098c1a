"""A hard budget on a key answers 402 naming the budget; the organization's credits are untouched."""

from __future__ import annotations

import openai
import pytest
from tests.e2e.gateway.conftest import Stack, cost

from creditgate.ledger.credits import parse_amount


def test_hard_key_budget_answers_402_with_its_limit_source(stack: Stack) -> None:
    stack.deploy(name="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("budgeted", "100")
    # 2000 output tokens at 600 credits per 1M make a hold of about 1.2 credits, more than the
    # key's budget of 1; 100 output tokens (0.06) fit.
    stack.services.ledger.set_budget(org_id, f"key:{key_id}", parse_amount("1"), mode="hard")
    client = stack.openai(secret)
    messages = [{"role": "user", "content": "hello"}]
    client.chat.completions.create(model="mock-gpt", messages=messages, max_tokens=100)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="mock-gpt", messages=messages, max_tokens=2000)
    assert refused.value.status_code == 402
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["code"] == "insufficient_credits"
    assert error["limit_source"] == f"key:{key_id}".join(["budget:", ""])
    balance = stack.services.ledger.balance(org_id)
    assert balance.pending == 0 and balance.available > parse_amount("99")
    [budget] = stack.services.ledger.list_budgets(org_id)
    assert budget.held == 0 and 0 < budget.spent < parse_amount("0.01")


def test_what_an_upstream_reports_beyond_the_hold_counts_against_the_keys_budget(stack: Stack) -> None:
    """The hold fits the hard budget; the excess does not, and is charged all the same (the
    budget stopped what it could when the hold was taken; the tokens are used)."""
    stack.deploy(name="mock-gpt")
    org_id, key_id, secret = stack.org_with_key("budgeted", "100")
    cap = parse_amount("0.02")
    stack.services.ledger.set_budget(org_id, f"key:{key_id}", cap, mode="hard")
    raw = stack.openai(secret).chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "#overreport"}], max_tokens=2)
    usage = raw.parse().usage
    charged = parse_amount(raw.headers["x-creditgate-cost"])
    assert charged == cost(usage.prompt_tokens, usage.completion_tokens)  # far above the hold of 2 tokens
    [budget] = stack.services.ledger.list_budgets(org_id)
    assert (budget.spent, budget.held) == (charged, 0)  # the excess too, not only the hold
    assert charged > cap
    assert stack.services.ledger.balance(org_id).available == parse_amount("100") - charged
    [row] = stack.usage_rows()
    assert "uncollected_credits" not in row["meters"]
