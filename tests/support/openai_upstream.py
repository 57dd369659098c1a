"""A small OpenAI-compatible upstream for tests and the benchmark, served on loopback.

Deterministic: a reply is ``reply_tokens`` words ("tok0 tok1 ..."), cut at ``max_tokens``; prompt
tokens are the words of the prompt plus 3 per message. Directives in the prompt change behaviour:
``#error500`` (a 500 answer), ``#overreport`` (usage far above max_tokens), ``#slow`` (sleeps
past short timeouts), ``#cut`` (the stream stops after two chunks without [DONE] or usage),
``#crash`` (the stream breaks off after two chunks: the connection drops mid-answer),
``#drip`` (5 ms between stream chunks), ``#linger`` (1 s between stream chunks), ``#lengthy``
(LENGTHY_REPLY_TOKENS words instead of ``reply_tokens``, still cut at ``max_tokens``; not named
``#long``, which ``#longline`` contains), ``#cookie`` (the answer sets a cookie; the request's
own ``cookie`` header is appended to ``cookies_seen``),
``#redirect`` (a 307 to the same path, which answers normally), ``#chunked`` (a plain answer sent
without a content-length), ``#gzip`` (the answer, plain or streamed, is gzip-encoded),
``#pad`` (a plain answer carries PAD_BYTES more of padding, which gzip shrinks to about a
thousandth), and for streams, each replacing the third chunk (the one that would carry ``tok2``)
and then going on as usual: ``#longline`` (a chunk LONG_LINE_BYTES long, longer than the gateway
reads a line), ``#badchoices`` (a chunk whose ``choices`` is 5), ``#deepchunk`` (a chunk whose
``logprobs`` nest DEEP_LEVELS deep: orjson reads it but cannot write it). Every usage it reports
is appended to ``reported``.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

REPLY_TOKENS = 5
LENGTHY_REPLY_TOKENS = 2000
PAD_BYTES = 1024 * 1024
LONG_LINE_BYTES = 4 * 1024 * 1024
DEEP_LEVELS = 300


class UpstreamCrashed(Exception):
    pass


def _prompt(body: dict[str, Any]) -> tuple[str, int]:
    if "messages" in body:
        texts = [m.get("content") if isinstance(m.get("content"), str) else "" for m in body["messages"]]
        text = " ".join(texts)
        return text, len(text.split()) + 3 * len(texts)
    prompt = body.get("prompt", body.get("input", ""))
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    return text, max(1, len(text.split()))


def create_upstream_app(reply_tokens: int = REPLY_TOKENS) -> Starlette:
    reported: list[dict[str, Any]] = []
    cookies_seen: list[str | None] = []

    def answer_error(status: int, message: str) -> Response:
        return Response(orjson.dumps({"error": {"message": message, "type": "server_error",
                                                "param": None, "code": "boom"}}),
                        status_code=status, media_type="application/json")

    async def generate(request: Request, kind: str) -> Response:
        body = orjson.loads(await request.body())
        text, prompt_tokens = _prompt(body)
        if "#error500" in text:
            return answer_error(500, "the upstream broke")
        if "#redirect" in text and "again" not in request.query_params:
            return Response(status_code=307, headers={"location": f"{request.url.path}?again=1"})
        if "#slow" in text:
            await asyncio.sleep(1)
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10**9
        tokens = LENGTHY_REPLY_TOKENS if "#lengthy" in text else reply_tokens
        count = min(tokens, limit) * (body.get("n") or 1)
        completion_tokens = count * 50 if "#overreport" in text else count
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        created = int(time.time())
        words = [f"tok{i} " for i in range(min(tokens, limit))]
        if body.get("stream"):
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            events = _stream(kind, body["model"], words, usage, include_usage, text, reported)
            if "#gzip" in text:
                return StreamingResponse(_gzipped(events), media_type="text/event-stream",
                                         headers={"content-encoding": "gzip"})
            return StreamingResponse(events, media_type="text/event-stream")
        reported.append(usage)
        headers = {}
        if "#cookie" in text:
            cookies_seen.append(request.headers.get("cookie"))
            headers["set-cookie"] = f"upstream_session=s{len(cookies_seen)}; Path=/"
        if kind == "chat":
            choices = [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                        "finish_reason": "stop"}]
        else:
            choices = [{"index": 0, "text": "".join(words), "finish_reason": "stop"}]
        answer = {"id": "cmpl-test", "object": "chat.completion" if kind == "chat" else "text_completion",
                  "created": created, "model": body["model"], "choices": choices, "usage": usage}
        if "#pad" in text:
            answer["padding"] = "x" * PAD_BYTES
        content = orjson.dumps(answer)
        if "#gzip" in text:
            content = gzip.compress(content)
            headers["content-encoding"] = "gzip"
        if "#chunked" in text:
            return StreamingResponse(iter([content[:10], content[10:]]), media_type="application/json",
                                     headers=headers)
        return Response(content, media_type="application/json", headers=headers)

    async def chat(request: Request) -> Response:
        return await generate(request, "chat")

    async def completions(request: Request) -> Response:
        return await generate(request, "completions")

    async def embeddings(request: Request) -> Response:
        body = orjson.loads(await request.body())
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(max(1, len(str(item).split())) for item in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        reported.append(usage)
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
        return Response(orjson.dumps({"object": "list", "data": data, "model": body["model"], "usage": usage}),
                        media_type="application/json")

    async def models(request: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": []}), media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/completions", completions, methods=["POST"]),
                            Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"])])
    app.state.reported = reported
    app.state.cookies_seen = cookies_seen
    return app


async def _stream(kind: str, model: str, words: list[str], usage: dict[str, Any], include_usage: bool,
                  text: str, reported: list[dict[str, Any]]) -> Any:
    created = int(time.time())
    base = {"id": "chatcmpl-test", "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": created, "model": model}
    for index, word in enumerate(words):
        if "#cut" in text and index == 2:
            return
        if "#crash" in text and index == 2:
            raise UpstreamCrashed("a crash mid-stream")  # the server drops the connection
        if "#drip" in text:
            await asyncio.sleep(0.005)
        if "#linger" in text and index:
            await asyncio.sleep(1.0)
        if kind == "chat":
            choice = {"index": 0, "delta": {"content": word} if index else {"role": "assistant", "content": word},
                      "finish_reason": None}
        else:
            choice = {"index": 0, "text": word, "finish_reason": None}
        if index == 2 and "#longline" in text:
            choice = {**choice, "delta": {"content": word + "x" * LONG_LINE_BYTES}}
        chunk = {**base, "choices": 5 if index == 2 and "#badchoices" in text else [choice]}
        if include_usage:
            chunk["usage"] = None
        if index == 2 and "#deepchunk" in text:
            # Written by hand: orjson writes no more than 255 levels.
            deep = b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
            yield b"data: " + orjson.dumps(chunk).replace(
                b'"finish_reason":null', b'"finish_reason":null,"logprobs":' + deep) + b"\n\n"
            continue
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    last = {"index": 0, "delta": {}, "finish_reason": "stop"} if kind == "chat" else \
        {"index": 0, "text": "", "finish_reason": "stop"}
    yield b"data: " + orjson.dumps({**base, "choices": [last]}) + b"\n\n"
    if include_usage:
        reported.append(usage)
        yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _gzipped(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """One gzip stream, flushed after each event so that each reaches the client as it is made."""
    compressor = zlib.compressobj(wbits=31)  # 31: a gzip header and trailer
    async for event in events:
        yield compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()
