"""Webhooks end to end: a receiver on loopback that fails twice and then succeeds."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.e2e.gateway.conftest import Stack
from tests.support.servers import serve

from creditgate.ledger.credits import parse_amount
from creditgate.tracking import signing
from creditgate.tracking.service import get_tracking
from creditgate.tracking.webhooks import backoff_s


def receiver(fail_first: int) -> Starlette:
    """Answers 500 to the first ``fail_first`` requests, then 204; keeps what it received."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        received.append({"headers": dict(request.headers), "body": body})
        # A cookie on every answer: deliveries must not send it back (one client delivers for
        # every organization, and two organizations' endpoints may share a host).
        return Response(status_code=500 if len(received) <= fail_first else 204,
                        headers={"set-cookie": f"receiver_session=r{len(received)}; Path=/"})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.received = received
    return app


def test_alert_is_retried_with_backoff_and_delivered_once(tracking_stack: Stack) -> None:
    stack = tracking_stack
    app = receiver(fail_first=2)
    org_id, _, secret_key = stack.org_with_key("hooked", "100", scopes=("inference", "read", "manage"))
    tracking = get_tracking(stack.services)
    headers = {"authorization": f"Bearer {secret_key}"}
    with serve(app) as hook_url:
        import httpx

        endpoint = httpx.post(f"{stack.url}/api/v1/orgs/{org_id}/webhooks", headers=headers,
                              json={"url": f"{hook_url}/hook", "event_types": ["alert.fired"]}).json()
        rule = httpx.post(f"{stack.url}/api/v1/orgs/{org_id}/alert-rules", headers=headers,
                          json={"kind": "available_below", "params": {"credits": "50"}})
        assert rule.status_code == 201, rule.text
        stack.services.ledger.debit(org_id, parse_amount("60"))
        tracking.step()  # the rule fires; the first attempt fails
        tracking.step()  # nothing is due yet: no second attempt, no second alert
        assert len(app.state.received) == 1
        stack.clock.advance(seconds=backoff_s(1))
        tracking.step()  # second attempt fails
        stack.clock.advance(seconds=backoff_s(2) - 1)
        tracking.step()
        assert len(app.state.received) == 2  # one second early: still waiting
        stack.clock.advance(seconds=1)
        tracking.step()  # third attempt succeeds
        for _ in range(3):
            stack.clock.advance(seconds=3600)
            tracking.step()
        received = app.state.received
        assert len(received) == 3
        ids = {item["headers"]["webhook-id"] for item in received}
        assert len(ids) == 1  # one message, retried: the receiver deduplicates on webhook-id
        for item in received:
            signing.verify(endpoint["secret"], item["headers"], item["body"])
            assert "cookie" not in item["headers"]
        payload = orjson.loads(received[-1]["body"])
        assert payload["type"] == "alert.fired"
        assert payload["data"]["kind"] == "available_below" and payload["data"]["org_id"] == org_id
        deliveries = httpx.get(f"{stack.url}/api/v1/orgs/{org_id}/webhook-deliveries", headers=headers).json()["data"]
        assert [(d["status"], d["attempts"]) for d in deliveries] == [("delivered", 3)]
        log = httpx.get(f"{stack.url}/api/v1/orgs/{org_id}/webhook-deliveries/{deliveries[0]['id']}",
                        headers=headers).json()["log"]
        assert [entry["status_code"] for entry in log] == [500, 500, 204]
        alerts = httpx.get(f"{stack.url}/api/v1/orgs/{org_id}/alerts", headers=headers).json()["data"]
        assert [a["transition"] for a in alerts] == ["fired"]

        # Manual redelivery sends the same message again, signed with both secrets after a rotation.
        rotated = httpx.post(f"{stack.url}/api/v1/orgs/{org_id}/webhooks/{endpoint['id']}/rotate",
                             headers=headers, json={"overlap_s": 3600}).json()
        assert rotated["secret"] != endpoint["secret"]
        again = httpx.post(f"{stack.url}/api/v1/orgs/{org_id}/webhook-deliveries/{deliveries[0]['id']}/redeliver",
                           headers=headers)
        assert again.json()["status"] == "pending"
        tracking.step()
        last = received[-1]
        assert len(received) == 4 and last["headers"]["webhook-id"] in ids
        assert len(last["headers"]["webhook-signature"].split()) == 2
        signing.verify(endpoint["secret"], last["headers"], last["body"])
        signing.verify(rotated["secret"], last["headers"], last["body"])


def test_attempts_are_bounded(tracking_stack: Stack) -> None:
    stack = tracking_stack
    app = receiver(fail_first=1_000)
    org_id, _, _ = stack.org_with_key("never-ok", "100")
    tracking = get_tracking(stack.services)
    with serve(app) as hook_url:
        tracking.webhooks.create_endpoint(org_id, f"{hook_url}/hook")
        stack.services.ledger.grant(org_id, parse_amount("5"), kind="promotional")
        tracking.step()
        for _ in range(20):
            stack.clock.advance(seconds=7 * 3600)
            tracking.step()
        deliveries = tracking.webhooks.list_deliveries(org_id)
        assert [(d["event_type"], d["status"], d["attempts"]) for d in deliveries] == [("grant.created", "failed", 8)]
        assert len(app.state.received) == 8


@pytest.mark.parametrize("tampered", ["body", "id", "secret"])
def test_signatures_refuse_tampering(tampered: str) -> None:
    secret = signing.new_secret()
    body = b'{"type":"alert.fired"}'
    headers = signing.headers([secret], "msg_1", 1_700_000_000, body)
    signing.verify(secret, headers, body, now_s=1_700_000_100)
    if tampered == "body":
        body = body + b" "
    elif tampered == "id":
        headers = {**headers, "webhook-id": "msg_2"}
    else:
        secret = signing.new_secret()
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, headers, body)
