"""Which requests may go upstream before their hold is committed (Pipeline._may_overlap).

A key's requests that are forwarded ahead of their holds are tallied, so that a burst arriving
in the same turn of the event loop cannot send more upstream than the key was last seen able to
pay: the rest reserve first, and a refused hold never reaches the upstream.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from creditgate.gateway.pipeline import Call, Pipeline


class Tally(Pipeline):
    def __init__(self, last_available: dict[str, int]) -> None:
        self.config = SimpleNamespace(reserve_while_forwarding=True)
        self._last_available = last_available
        self._unheld = {}
        self._unheld_waiters = {}


def call(key: str, max_cost: int) -> Call:
    principal: Any = SimpleNamespace(key_id=key, org_id="org_1", project_id=None)
    return Call(principal, SimpleNamespace(), "chat", {}, 0, 0, max_cost, {}, 0)


def test_a_burst_overlaps_only_as_far_as_the_last_known_balance_covers() -> None:
    pipeline = Tally({"key_a": 250})
    burst = [call("key_a", 100) for _ in range(5)]
    assert [pipeline._may_overlap(c) for c in burst] == [True, True, False, False, False]
    assert pipeline._unheld == {"key_a": 200}


def test_a_committed_or_finished_request_frees_its_share_once() -> None:
    pipeline = Tally({"key_a": 250})
    first, second, third = call("key_a", 100), call("key_a", 100), call("key_a", 100)
    assert pipeline._may_overlap(first) and pipeline._may_overlap(second)
    pipeline._reserved(first, {"hold_id": "hld_1", "available": 150})  # its hold now stands
    assert pipeline._unheld == {"key_a": 100}
    assert not pipeline._may_overlap(third)  # 150 known, 100 of it still unheld
    pipeline._held(second)
    pipeline._held(second)  # twice (settle, then the request's end): counted once
    assert pipeline._unheld == {}
    assert pipeline._may_overlap(third)


def test_a_refusal_forgets_the_balance_so_the_next_request_reserves_first() -> None:
    pipeline = Tally({"key_a": 1000})
    refused = call("key_a", 100)
    assert pipeline._may_overlap(refused)
    pipeline._refused(refused)
    assert pipeline._unheld == {} and "key_a" not in pipeline._last_available
    assert not pipeline._may_overlap(call("key_a", 100))


def test_keys_are_tallied_apart() -> None:
    pipeline = Tally({"key_a": 100, "key_b": 100})
    assert pipeline._may_overlap(call("key_a", 100))
    assert pipeline._may_overlap(call("key_b", 100))
    assert not pipeline._may_overlap(call("key_a", 1))


def test_a_request_cancelled_while_it_waits_for_earlier_holds_gives_back_its_rate_limit_slot() -> None:
    import asyncio

    from creditgate.clock import ManualClock
    from creditgate.gateway.limits import MemoryRateLimiter, RateLimits

    limiter = MemoryRateLimiter(ManualClock())
    pipeline = Tally({"key_a": 100})

    async def limiter_of_pipeline() -> MemoryRateLimiter:
        return limiter

    pipeline.limiter = limiter_of_pipeline  # type: ignore[method-assign]
    limits = RateLimits(concurrent_max=2)

    async def run() -> None:
        upstream_first = call("key_a", 100)
        upstream_first.ticket = await limiter.admit("key_a", limits, 0)
        assert pipeline._may_overlap(upstream_first)  # upstream, its hold not yet committed
        waiting = call("key_a", 100)
        waiting.ticket = await limiter.admit("key_a", limits, 0)
        reserve = asyncio.ensure_future(pipeline.reserve(waiting))  # waits for the first's hold
        await asyncio.sleep(0)
        assert not reserve.done()
        reserve.cancel()  # say the server shuts down
        await asyncio.gather(reserve, return_exceptions=True)
        assert waiting.ticket is None
        # Only the first request still holds a slot: a new one fits under concurrent_max=2.
        await limiter.admit("key_a", limits, 0)

    asyncio.run(run())
