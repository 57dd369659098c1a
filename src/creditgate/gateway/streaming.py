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

from creditgate.gateway.upstream import UpstreamFailure

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
        """The bytes to send the client for one upstream SSE line, or None to send nothing.

        A chunk that is JSON but cannot be read as a chunk (``"choices": 5``) or re-encoded for
        the client (orjson reads 1,024 levels of nesting but writes 255) raises UpstreamFailure
        ``upstream_stream_broken``: the upstream failed mid-stream, and the stream ends with an
        error event. Such a chunk counts for nothing: neither its deltas nor its usage.
        """
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
        choices = chunk.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise _unreadable(f"its choices are not a list ({type(choices).__name__})")
        usage = chunk.get("usage")  # (taken before _for_client strips it)
        out = self._for_client(chunk, data)
        # Counted only once the chunk is ready to go: a chunk that failed above reached no one.
        if isinstance(usage, dict):
            self.usage = usage
        for choice in choices or ():
            if _carries_output(choice):
                self.delivered_deltas += 1
        return out

    def _for_client(self, chunk: dict[str, Any], data: bytes) -> bytes | None:
        if self.client_wants_usage or "usage" not in chunk:
            return b"data: " + data + b"\n\n"
        if not chunk.get("choices"):
            return None
        del chunk["usage"]
        try:
            return b"data: " + orjson.dumps(chunk) + b"\n\n"
        except TypeError:
            raise _unreadable("it nests deeper than the 255 levels that can be relayed") from None


def _unreadable(why: str) -> UpstreamFailure:
    return UpstreamFailure(502, f"the upstream sent a stream chunk the gateway cannot relay: {why}",
                           code="upstream_stream_broken")


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
