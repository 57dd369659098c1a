"""The two calls the gateway makes into tracking; both are cheap and never touch the database."""

from __future__ import annotations

import time
from typing import Any

from creditgate.tracking.metrics import observe_request, upstream_timer
from creditgate.tracking.service import notify_request

__all__ = ["request_settled", "upstream_timer"]


def request_settled(services: Any, org_id: str, deployment: str, status: str, meters: dict[str, int],
                    credits: int, started_ns: int) -> None:
    """Count the request in the metrics and wake the organization's live dashboard streams."""
    observe_request(deployment, status, (time.perf_counter_ns() - started_ns) / 1e9,
                    meters.get("input_tokens", 0), meters.get("output_tokens", 0), credits, org_id)
    notify_request(services, org_id)
