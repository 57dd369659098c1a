"""The floor for bench_gateway.py: the least a Python proxy on the gateway's stack can add.

Raw ASGI on uvicorn (uvloop + httptools) forwarding each request body to the upstream with one
pooled aiohttp session, and the answer back: no authentication, no pricing, no ledger, no
usage record. Whatever this adds, creditgate's gateway cannot add less on the same machine.

Run by bench_gateway.py:  python benchmarks/bare_proxy.py PORT UPSTREAM_URL
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn


def create_app(upstream_url: str) -> Any:
    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] != "http":
            return
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        async with session.post(upstream_url, data=body,
                                headers={"content-type": "application/json"}) as response:
            content = await response.read()
            status = response.status
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    return app


if __name__ == "__main__":
    uvicorn.run(create_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, lifespan="off", loop="uvloop", http="httptools")
