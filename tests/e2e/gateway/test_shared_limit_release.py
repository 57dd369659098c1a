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
    release_done: list[int] = []
    commits_ended: list[int] = []
    lock = threading.Lock()
    releasing = threading.Event()  # a release was asked for and has not answered yet
    released = threading.Event()
    release, commit = limiter.release, stack.services.ledger.writer._commit

    def timed_release(ticket: Any, tokens_used: int) -> Any:
        releasing.set()
        released.clear()

        async def run() -> None:
            release_started.append(time.perf_counter_ns())
            await release(ticket, tokens_used)
            release_done.append(time.perf_counter_ns())
            releasing.clear()
            released.set()
        return run()

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        # A commit that starts while a release is on its way waits for Redis's answer first, so
        # that "the release overlapped the commit" does not depend on which thread runs first.
        # (Bounded: a release that only starts after the commit can never be waited for.)
        if releasing.is_set():
            released.wait(timeout=2)
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

    assert len(release_done) == REQUESTS
    for (sent, done), started, finished in zip(answered, release_started, release_done, strict=True):
        assert sent < started < finished < done
        # The settlement's commit ended after Redis answered the release, and before the answer:
        # with the release sent only after the commit, no commit of this request ends after it.
        assert any(finished < ended < done for ended in commits_ended), "release waited for the commit"
    slots = redis.Redis.from_url(redis_url).zcard(f"creditgate:rl:{key_id}:slots")
    assert slots == 0
