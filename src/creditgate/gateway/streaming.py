"""Server-sent events between the upstream and the client, metered as they pass.

The upstream is always asked for usage (``stream_options.include_usage``); the usage chunk is
passed on only when the client asked for it. When no usage arrives (the client went away, or the
upstream failed mid-stream), the output is counted from the chunks the client was sent: each
content-bearing delta carries at least one token, and OpenAI-compatible servers send one token per
delta.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE_LINE = b"data: [DONE]"


class StreamMeter:
    """Counts what a stream delivered and edits chunks for the client."""

    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.usage: dict[str, Any] | None = None
        self.delivered_deltas = 0
        self.done = False
        self.failed: dict[str, Any] | None = None

    def feed(self, line: bytes) -> bytes | None:
        """The bytes to send the client for one upstream SSE line, or None to send nothing."""
        if not line.startswith(b"data:"):
            return None  # comments, event names and retry hints are the upstream's business
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        if isinstance(chunk.get("error"), dict):
            self.failed = chunk
            return b"data: " + data + b"\n\n"
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in chunk.get("choices") or ():
            if _carries_output(choice):
                self.delivered_deltas += 1
        if self.client_wants_usage:
            return b"data: " + data + b"\n\n"
        if "usage" in chunk:
            if not chunk.get("choices"):
                return None
            del chunk["usage"]
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        return b"data: " + data + b"\n\n"


def _carries_output(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return bool(delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content")
                    or delta.get("function_call") or delta.get("refusal"))
    return bool(choice.get("text"))


class MeteredStream(StreamingResponse):
    """A streaming response whose ``finish`` runs exactly once, whatever ends the stream.

    A client that disconnects cancels the body task; ``finish`` (settle the hold, release the
    rate-limit slot, record usage) then runs shielded from that cancellation.
    """

    def __init__(self, content: AsyncIterator[bytes], finish: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish()
