"""The gateway's settings, from the environment, with every limit named."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

BODY_BYTES_MAX: Final = 8 * 1024 * 1024
HOLD_TTL_MIN_S: Final = 120
# A stream is timed line by line (the deployment's timeout), and as a whole by this: its hold must
# outlive it, and a stream without end would keep a concurrency slot without end.
STREAM_SECONDS_MAX: Final = 30 * 60


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    redis_url: str | None = None
    body_bytes_max: int = BODY_BYTES_MAX
    deployment_cache_ttl_s: float = 2.0
    limits_cache_ttl_s: float = 2.0
    onnx_threads: int = 2
    # On SQLite, commit each loop turn's ledger operations on the event loop itself (see
    # creditgate.ledger.loop_commit) rather than handing them to the writer thread.
    ledger_commits_on_loop: bool = True
    # Commit a request's hold while its upstream works, instead of before sending it (see
    # Pipeline.reserve_while_forwarding).
    reserve_while_forwarding: bool = True
    # Where the writer thread commits (PostgreSQL), how long a hold waits for its upstream's
    # answer, so that a fast answer's hold goes with its settlement as one transaction (see
    # Pipeline.reserve). 0 commits every hold at once.
    join_wait_s: float = 0.003

    @classmethod
    def from_env(cls) -> GatewayConfig:
        return cls(
            redis_url=os.environ.get("CREDITGATE_REDIS_URL") or None,
            deployment_cache_ttl_s=float(os.environ.get("CREDITGATE_DEPLOYMENT_CACHE_TTL_S", "2")),
            limits_cache_ttl_s=float(os.environ.get("CREDITGATE_LIMITS_CACHE_TTL_S", "2")),
            onnx_threads=int(os.environ.get("CREDITGATE_ONNX_THREADS", "2")),
            ledger_commits_on_loop=os.environ.get("CREDITGATE_LEDGER_COMMITS", "loop") != "thread",
            reserve_while_forwarding=os.environ.get("CREDITGATE_RESERVE_WHILE_FORWARDING", "1") != "0",
            join_wait_s=float(os.environ.get("CREDITGATE_JOIN_WAIT_MS", "3")) / 1000,
        )


def hold_ttl_s(timeout_ms: int, *, stream: bool = False) -> int:
    """A hold outlives the request it covers: twice the upstream timeout (the wait for a slot and
    the call), at least two minutes; for a stream, the longest a stream may run, plus as much."""
    plain = max(HOLD_TTL_MIN_S, 2 * -(-timeout_ms // 1000))
    return max(plain, STREAM_SECONDS_MAX + plain) if stream else plain
