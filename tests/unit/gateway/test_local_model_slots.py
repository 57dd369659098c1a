"""Which semaphore a local model's request takes when the deployment's concurrency_max changes."""

from __future__ import annotations

import asyncio
import dataclasses

from creditgate.gateway.deployments import Deployment
from creditgate.gateway.local_models import LocalModels
from creditgate.gateway.prices import parse_prices

V1 = Deployment(id="dep_1", name="iris", backend="onnx", kind="predict", base_url=None, upstream_model=None,
                api_key_env=None, api_key_encrypted=None, prices=parse_prices({"requests": "1", "per": 1}),
                scope="default", orgs=None, timeout_ms=1000, concurrency_max=1, max_tokens_default=1,
                model_sha256=None, metadata={}, created_at_us=1, updated_at_us=1)
V2 = dataclasses.replace(V1, concurrency_max=3, updated_at_us=2)


async def slots() -> None:
    models = LocalModels(lambda _: b"")
    try:
        old = models._slot(V1)
        assert models._slot(V1) is old
        await old.acquire()  # a request in flight under the old limit
        new = models._slot(V2)
        assert new is not old and not new.locked()
        for _ in range(3):
            await new.acquire()
        assert new.locked()  # the new limit, counted apart from the request in flight
        old.release()  # which gives back what it took, and nothing of the new limit
        assert new.locked()
        # A request that read the deployment before the change does not bring the old limit back.
        assert models._slot(V1) is new
        assert models._slot(V2) is new
    finally:
        models.close()


def test_a_changed_concurrency_max_makes_a_new_semaphore_and_an_older_read_keeps_it() -> None:
    asyncio.run(slots())
