"""A request's rate-limit slot in Redis is given back while its charge is being committed.

With limits shared in Redis, giving the slot back is a round trip to Redis. The gateway sends it
when the settlement's commit starts instead of after the commit, so the request does not wait for
both one after the other; the answer still leaves only after both, so a client's next request
never finds the previous one's slot taken.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis
from tests.e2e.gateway.conftest import Stack

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
REQUESTS = 12


def test_the_slot_goes_back_during_the_commit_and_before_the_answer(shared_limits_stack: Stack,
                                                                     redis_url: str) -> None:
    stack = shared_limits_stack
    stack.deploy(name="mock-gpt")
    _, key_id, secret = stack.org_with_key("acme", "100")
    response = stack.admin.put(f"/api/v1/rate-limits/key:{key_id}", json={"concurrent_max": 1})
    assert response.status_code == 200, response.text
    client = stack.openai(secret)
    ask = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    client.chat.completions.create(**ask)  # makes the gateway's limiter

    gateway: Any = stack.services.extras["gateway"]
    limiter = gateway._limiter
    assert limiter.remote
    release_started: list[int] = []
    commits_ended: list[int] = []
    lock = threading.Lock()
    release, commit = limiter.release, stack.services.ledger.writer._commit

    async def timed_release(ticket: Any, tokens_used: int) -> None:
        release_started.append(time.perf_counter_ns())  # runs on the event loop, when Redis is asked
        await release(ticket, tokens_used)

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        try:
            return commit(*args, **kwargs)
        finally:
            with lock:
                commits_ended.append(time.perf_counter_ns())

    limiter.release = timed_release
    stack.services.ledger.writer._commit = timed_commit
    answered: list[tuple[int, int]] = []
    for _ in range(REQUESTS):
        # One slot per key: each request finds the one before it released, or it would get 429.
        sent = time.perf_counter_ns()
        client.chat.completions.create(**ask)
        answered.append((sent, time.perf_counter_ns()))

    assert len(release_started) == REQUESTS
    for (sent, done), started in zip(answered, release_started, strict=True):
        assert sent < started < done
        # The settlement's commit ended after the release began, and before the answer.
        assert any(started < ended < done for ended in commits_ended), "release waited for the commit"
    slots = redis.Redis.from_url(redis_url).zcard(f"creditgate:rl:{key_id}:slots")
    assert slots == 0
