"""Scrape /metrics after real gateway traffic and parse it with prometheus_client's parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.e2e.gateway.conftest import Stack


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_requests_tokens_credits_and_refusals(tracking_stack: Stack) -> None:
    stack = tracking_stack
    stack.deploy(name="metrics-model")
    _, _, rich = stack.org_with_key("metrics-rich", "1000")
    _, _, poor = stack.org_with_key("metrics-poor", "0.000001")
    before = _samples(stack.url)
    client = stack.openai(rich)
    for _ in range(3):
        client.chat.completions.create(model="metrics-model", messages=[{"role": "user", "content": "hi there"}],
                                       max_tokens=10)
    refused = httpx.post(f"{stack.url}/v1/chat/completions", headers={"authorization": f"Bearer {poor}"},
                         json={"model": "metrics-model", "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 402
    hold = stack.services.ledger.reserve(stack.services.ledger.find_org("metrics-rich").id, 1_000_000)
    after = _samples(stack.url)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("creditgate_gateway_requests_total", deployment="metrics-model", status="ok") == 3
    # The test upstream answers 5 tokens; "hi there" is 2 words + 3 per message.
    assert delta("creditgate_gateway_tokens_total", deployment="metrics-model", direction="output") == 15
    assert delta("creditgate_gateway_tokens_total", deployment="metrics-model", direction="input") == 15
    # 150 credits per 1M input tokens and 600 per 1M output: 15*150 + 15*600 micro-credits.
    assert delta("creditgate_gateway_credits_consumed_microcredits_total", deployment="metrics-model") == 11250
    assert delta("creditgate_gateway_insufficient_credits_total") == 1
    assert delta("creditgate_gateway_http_responses_total", code="402") == 1
    assert delta("creditgate_gateway_http_responses_total", code="200") == 3
    assert delta("creditgate_gateway_request_duration_seconds_count", deployment="metrics-model") == 3
    assert delta("creditgate_upstream_request_duration_seconds_count", deployment="metrics-model") == 3
    assert after[("creditgate_pending_holds", ())] >= 1
    assert after[("creditgate_pending_hold_microcredits", ())] >= 1_000_000
    assert hold["hold_id"]
    # Bounded cardinality: no label names a key, an organization or a request.
    for name, labels in after:
        assert not {label for label, _ in labels} & {"key", "key_id", "org", "org_id", "request_id"}, name
