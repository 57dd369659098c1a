"""Talking to OpenAI-compatible upstreams over one pooled ``aiohttp.ClientSession``.

Forwarding is most of the gateway's own CPU time per request. httpx's asyncio pool spent
several milliseconds of CPU per request here (it polls every idle pooled socket on each
checkout), which made the gateway add ~8 ms at one connection and collapse at 32; aiohttp's
C-accelerated HTTP client does the same job in a fraction of that. Timeouts and pool limits are
explicit. Upstream error answers come back as :class:`UpstreamFailure` carrying the upstream's
status and an OpenAI-shaped body, so the gateway passes them through unchanged (and charges
nothing).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError

from creditgate.errors import UpstreamError
from creditgate.gateway import secrets
from creditgate.gateway.config import STREAM_SECONDS_MAX
from creditgate.gateway.deployments import Deployment

CONNECTIONS_MAX: Final = 1024
KEEPALIVE_CONNECTIONS_MAX: Final = 256
KEEPALIVE_EXPIRY_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 5.0
ERROR_BODY_BYTES_MAX: Final = 64 * 1024
QUEUE_WAIT_MAX_S: Final = 30.0
STREAM_LINE_BYTES_MAX: Final = 1024 * 1024
ANSWER_BYTES_MAX: Final = 256 * 1024 * 1024  # a plain answer (2,048 embeddings of 3,072 floats fit)
# A stream is relayed line by line, never held, so this bounds the work (reading, parsing,
# relaying) one upstream can make the gateway do, not its memory: without it an upstream dripping
# small chunks could push bytes for the whole 30 minutes a stream may run. The plain answer's cap,
# since a stream carries the same answer: ~230 bytes a chunk puts a 128k-token generation near
# 30 MiB, and even one with 20 top_logprobs a token (~1.3 KB a chunk) under 200 MiB.
STREAM_BYTES_MAX: Final = ANSWER_BYTES_MAX
# What reading an answer can raise besides a timeout. aiohttp reports a body it cannot decode (a
# corrupt gzip stream) or a stream line longer than its buffer (LineTooLong) as HttpProcessingError,
# which is not a ClientError; older versions said a line was too long with a ValueError.
_READ_ERRORS: Final = (TimeoutError, aiohttp.ClientError, HttpProcessingError)


class UpstreamFailure(UpstreamError):
    """An upstream answered with an error, timed out or could not be reached."""

    def __init__(self, status: int, message: str, *, code: str = "upstream_error",
                 body: dict[str, Any] | None = None, reached: bool = True) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.code = code  # type: ignore[misc]
        self.body = body
        # False when the request never got to the upstream (no connection, or no free slot):
        # a per-request fee is not due then.
        self.reached = reached

    def to_dict(self) -> dict[str, Any]:
        if self.body is not None:
            return self.body
        return super().to_dict()


class Upstreams:
    """Made inside the server's event loop (aiohttp sessions belong to one loop)."""

    def __init__(self) -> None:
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS_MAX, limit_per_host=KEEPALIVE_CONNECTIONS_MAX,
                                           keepalive_timeout=KEEPALIVE_EXPIRY_S),
            timeout=aiohttp.ClientTimeout(total=60.0, connect=CONNECT_TIMEOUT_S),
            trust_env=False, read_bufsize=STREAM_LINE_BYTES_MAX, auto_decompress=True,
            # One session serves every organization: a cookie an upstream sets for one request
            # must not ride along on another organization's request.
            cookie_jar=aiohttp.DummyCookieJar())
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}

    async def close(self) -> None:
        await self.client.close()

    def slot(self, deployment: Deployment) -> asyncio.Semaphore:
        """The deployment's concurrency limit in this process."""
        known = self._slots.get(deployment.id)
        if known is None or known[0] != deployment.concurrency_max:
            known = (deployment.concurrency_max, asyncio.Semaphore(deployment.concurrency_max))
            self._slots[deployment.id] = known
        return known[1]

    def busy(self, deployment: Deployment) -> bool:
        """No free slot: a request would wait in wait_turn."""
        return self.slot(deployment).locked()

    async def wait_turn(self, deployment: Deployment) -> asyncio.Semaphore:
        """Take one of the deployment's concurrent slots; answers the semaphore to release.

        The wait is bounded by the deployment's own timeout (and QUEUE_WAIT_MAX_S): queueing and
        the upstream call then stay within twice the timeout, which the hold's ttl covers, so a
        queued request never finds its hold expired. A request that waits longer fails with 503
        ``deployment_busy`` (the SDK retries it) before anything is sent.
        """
        semaphore = self.slot(deployment)
        if not semaphore.locked():
            await semaphore.acquire()  # free: no wait, and no timer task on the hot path
            return semaphore
        wait_s = min(QUEUE_WAIT_MAX_S, deployment.timeout_ms / 1000)
        try:
            await asyncio.wait_for(semaphore.acquire(), wait_s)
        except TimeoutError:
            raise UpstreamFailure(
                503, f"{deployment.name} is busy: none of its {deployment.concurrency_max} concurrent "
                     f"requests ended within {wait_s:g} s", code="deployment_busy", reached=False) from None
        return semaphore

    @staticmethod
    def _request(deployment: Deployment, path: str, *,
                 stream: bool = False) -> tuple[str, dict[str, str], aiohttp.ClientTimeout]:
        """URL, headers and timeouts. A plain answer must arrive whole within the deployment's
        timeout; a stream may run for as long as it keeps talking, up to STREAM_SECONDS_MAX: the
        timeout bounds the wait for each line (the first included), not the whole answer, or a
        long generation would be cut off halfway."""
        headers = {"content-type": "application/json"}
        api_key = secrets.resolve(deployment.api_key_env, deployment.api_key_encrypted)
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        timeout_s = deployment.timeout_ms / 1000
        connect_s = min(CONNECT_TIMEOUT_S, timeout_s)
        timeout = (aiohttp.ClientTimeout(total=STREAM_SECONDS_MAX, connect=connect_s, sock_read=timeout_s)
                   if stream else aiohttp.ClientTimeout(total=timeout_s, connect=connect_s))
        return f"{deployment.base_url}{path}", headers, timeout

    async def post_json(self, deployment: Deployment, path: str, body: bytes, *,
                        sent: asyncio.Future[None] | None = None) -> dict[str, Any]:
        """The upstream's JSON answer. ``sent`` is resolved once the request is on the wire."""
        url, headers, timeout = self._request(deployment, path)
        payload = _SentPayload(body, sent)
        try:
            async with self.client.post(url, data=payload, headers=headers, timeout=timeout,
                                        allow_redirects=False) as response:
                content = await _read_answer(response)
                status = response.status
                location = response.headers.get("location")
        except _READ_ERRORS as error:
            raise _transport_failure(deployment, error, reached=payload.written) from None
        if status >= 300:
            raise _answer_failure(status, content, location)
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamFailure(502, "the upstream answered with something that is not JSON") from None
        if not isinstance(answer, dict):
            raise UpstreamFailure(502, "the upstream answered with something that is not a JSON object")
        return answer

    async def stream_lines(self, deployment: Deployment, path: str, body: bytes, *,
                           sent: asyncio.Future[None] | None = None) -> AsyncIterator[bytes]:
        """The upstream's SSE lines. Errors before the first line raise UpstreamFailure.
        ``sent`` is resolved once the request is on the wire.

        A stream that goes past STREAM_BYTES_MAX (inflated bytes, line ends included) ends as one
        that broke off: UpstreamFailure ``upstream_stream_broken``, the line that crossed the cap
        not yielded."""
        url, headers, timeout = self._request(deployment, path, stream=True)
        payload = _SentPayload(body, sent)
        try:
            response = await self.client.post(url, data=payload, headers=headers, timeout=timeout,
                                              allow_redirects=False)
        except _READ_ERRORS as error:
            raise _transport_failure(deployment, error, reached=payload.written) from None
        try:
            if response.status >= 300:
                try:
                    content = await response.content.read(ERROR_BODY_BYTES_MAX)
                except _READ_ERRORS as error:
                    raise _transport_failure(deployment, error, reached=True) from None
                raise _answer_failure(response.status, content, response.headers.get("location"))
            # Read at call time, not bound at import, so that tests can lower it.
            size_max = STREAM_BYTES_MAX
            size = 0
            try:
                # Lines are read after aiohttp inflates a compressed stream, so its bound on a
                # line (its buffer's high-water mark) and the cap on the whole stream count
                # inflated bytes; a longer line is refused as it is read, never held whole.
                async for raw in response.content:
                    size += len(raw)
                    if size > size_max:
                        break
                    line = raw.rstrip(b"\r\n")
                    if line:
                        yield line
            except (*_READ_ERRORS, ValueError) as error:
                raise _transport_failure(deployment, error, reached=True, mid_stream=True) from None
            if size > size_max:
                raise UpstreamFailure(502, f"the upstream of {deployment.name} sent a stream larger than "
                                           f"{size_max} bytes", code="upstream_stream_broken")
        finally:
            response.release()


class _SentPayload(aiohttp.BytesPayload):
    """A JSON body that says when it has been handed to the connection: ``written``, and
    ``sent`` (when given) resolved."""

    def __init__(self, value: bytes, sent: asyncio.Future[None] | None) -> None:
        super().__init__(value, content_type="application/json")
        self._sent = sent
        self.written = False

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await super().write_with_length(writer, content_length)
        self.written = True
        if self._sent is not None and not self._sent.done():
            self._sent.set_result(None)


def _transport_failure(deployment: Deployment, error: BaseException, *, reached: bool,
                       mid_stream: bool = False) -> UpstreamFailure:
    """``reached``: whether the request was written to a connection. Told by the caller rather
    than read from the error's class: with a timeout_s of 5 s or less the connect timeout equals
    the total one, and aiohttp then raises a plain TimeoutError, not ConnectionTimeoutError, for
    a connection that was never made (and a per-request fee is due only for a request sent)."""
    name = deployment.name
    if isinstance(error, asyncio.TimeoutError):
        if mid_stream:
            limit = f"sent nothing for {deployment.timeout_ms / 1000:g} s or ran past {STREAM_SECONDS_MAX} s"
        else:
            limit = f"timed out after {deployment.timeout_ms / 1000:g} s"
            if not reached:
                limit += " before the request could be sent"
        return UpstreamFailure(504, f"the upstream of {name} {limit}", code="upstream_timeout", reached=reached)
    # A line too long, a corrupt encoding (aiohttp.InvalidURL is a ValueError too, but a ClientError).
    unreadable = isinstance(error, HttpProcessingError) or (isinstance(error, ValueError)
                                                            and not isinstance(error, aiohttp.ClientError))
    if mid_stream:
        what = "sent a stream the gateway cannot read" if unreadable else "broke off mid-stream"
        return UpstreamFailure(502, f"the upstream of {name} {what} ({type(error).__name__})",
                               code="upstream_stream_broken")
    if unreadable:
        return UpstreamFailure(502, f"the upstream of {name} sent an answer the gateway cannot read "
                                    f"({type(error).__name__})", reached=reached)
    return UpstreamFailure(502, f"the upstream of {name} could not be reached ({type(error).__name__})",
                           code="upstream_unreachable", reached=reached)


async def _read_answer(response: aiohttp.ClientResponse) -> bytes:
    """The whole answer, refused past ANSWER_BYTES_MAX (a gateway must not hold an upstream's
    unbounded answer in memory).

    The bytes counted are those the answer inflates to: aiohttp decompresses a gzip, deflate,
    brotli or zstd answer as it is read, and a 0.3 MB gzip answer can hold 300 MiB, so its
    content-length bounds nothing. Read chunk by chunk (``read()`` would inflate the whole answer
    at once), the answer is refused within one chunk past the cap. A declared length of an answer
    sent as is, is checked before anything is read."""
    length = response.content_length
    encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    if length is not None and not encoded:
        if length > ANSWER_BYTES_MAX:
            raise _answer_too_large()
        return await response.read()  # as declared: the common case, read at once
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > ANSWER_BYTES_MAX:
            raise _answer_too_large()
        chunks.append(chunk)
    return b"".join(chunks)  # (one chunk is returned as it is, not copied)


def _answer_too_large() -> UpstreamFailure:
    return UpstreamFailure(502, f"the upstream's answer is larger than {ANSWER_BYTES_MAX} bytes",
                           code="upstream_answer_too_large")


def _answer_failure(status: int, content: bytes, location: str | None = None) -> UpstreamFailure:
    if status < 400:
        # Redirects are not followed: a POST would be re-sent (with the deployment's credential)
        # to wherever the upstream points; the deployment's base_url should name the final address.
        return UpstreamFailure(502, f"the upstream answered {status}, a redirect to {location or 'nowhere'}: "
                                    "set the deployment's base_url to the final address",
                               code="upstream_redirect")
    if status in (401, 403, 407):
        # The upstream refused creditgate's credential, not the client's: a gateway problem.
        return UpstreamFailure(502, f"the upstream refused the deployment's credential ({status})",
                               code="upstream_auth_failed")
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        message = str(error.get("message") or f"upstream error {status}")
        body = {"error": {"type": error.get("type") or "upstream_error", "message": message,
                          "param": error.get("param"), "code": error.get("code") or "upstream_error"}}
        return UpstreamFailure(status, message, body=body)
    text = content[:500].decode(errors="replace")
    return UpstreamFailure(status, f"upstream error {status}: {text}")
