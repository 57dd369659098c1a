"""creditgate's gateway with its per-request ledger writes taken out: a bound, not a product.

Everything a request does runs as in ``python -m creditgate.gateway`` (authentication, pricing,
limits, forwarding, the usage bookkeeping around the writes, the answer), except that the hold
and its settlement are answered at once instead of being committed. What this adds over the
bare proxy is what creditgate costs besides its ledger; what the real gateway adds over this is
the price of the writes. ab_gateway.py runs it as the variant ``nowrites``.

Nothing is charged and no usage record is written: never point it at a database you keep.

Run by ab_gateway.py:  python benchmarks/gateway_without_writes.py PORT DATABASE_URL
"""

from __future__ import annotations

import sys
from typing import Any, Final

# The operations a gateway request commits (ReserveForRequest, ReserveAndSettle, SettleRequest).
REQUEST_WRITES: Final = frozenset({"hold_reserve", "hold_reserve_settle", "hold_post"})
CREDITS_WITHOUT_END: Final = 10**15


def serve_without_writes(port: int, database_url: str) -> None:
    from creditgate.gateway.__main__ import serve
    from creditgate.ledger.loop_commit import DEFERRED
    from creditgate.ledger.service import Ledger

    execute_async = Ledger.execute_async

    async def answer_at_once(self: Any, operation: Any, *, inline: bool = False, defer_if: Any = None) -> Any:
        if operation.kind not in REQUEST_WRITES:
            return await execute_async(self, operation, inline=inline, defer_if=defer_if)
        if defer_if is not None and defer_if():
            return DEFERRED  # the answer came first: the pipeline goes on to its joined "commit"
        return {"hold_id": "hld_not_written", "available": CREDITS_WITHOUT_END,
                "spendable": CREDITS_WITHOUT_END}

    Ledger.execute_async = answer_at_once  # type: ignore[method-assign]
    serve(database_url, "127.0.0.1", port)


if __name__ == "__main__":
    serve_without_writes(int(sys.argv[1]), sys.argv[2])
