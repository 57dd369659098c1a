"""A stream chunk the meter cannot read or re-encode is the upstream failing mid-stream: it raises
UpstreamFailure ``upstream_stream_broken`` (which the pipeline turns into an error event) and
counts for nothing, neither its deltas nor its usage."""

from __future__ import annotations

import orjson
import pytest

from creditgate.gateway.streaming import StreamMeter
from creditgate.gateway.upstream import UpstreamFailure

USAGE = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
DEEP = b"[" * 300 + b"]" * 300  # orjson reads 1,024 levels but writes 255


def data(chunk: object) -> bytes:
    return b"data: " + orjson.dumps(chunk)


def delta(text: str, **extra: object) -> bytes:
    return data({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}], **extra})


def deep_delta(text: str, usage: bytes | None) -> bytes:
    line = (b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"' + text.encode()
            + b'"},"logprobs":' + DEEP + b"}]")
    return line + (b',"usage":' + usage if usage is not None else b"") + b"}"


@pytest.mark.parametrize("choices", [5, "xyz", {"index": 0}, True])
@pytest.mark.parametrize("client_wants_usage", [True, False])
def test_choices_that_are_not_a_list_break_the_stream(choices: object, client_wants_usage: bool) -> None:
    meter = StreamMeter(client_wants_usage)
    assert meter.feed(delta("a")) is not None
    with pytest.raises(UpstreamFailure) as failure:
        meter.feed(data({"id": "c", "choices": choices, "usage": USAGE}))
    assert (failure.value.status, failure.value.code) == (502, "upstream_stream_broken")
    assert failure.value.to_dict()["error"]["code"] == "upstream_stream_broken"
    assert (meter.delivered_deltas, meter.usage, meter.done, meter.failed) == (1, None, False, None)


@pytest.mark.parametrize("usage", [b"null", orjson.dumps(USAGE)])
def test_a_chunk_too_deep_to_rewrite_without_usage_breaks_the_stream_uncounted(usage: bytes) -> None:
    meter = StreamMeter(client_wants_usage=False)
    assert meter.feed(delta("a", usage=None)) == b"data: " + orjson.dumps(
        {"id": "c", "choices": [{"index": 0, "delta": {"content": "a"}}]}) + b"\n\n"
    with pytest.raises(UpstreamFailure) as failure:
        meter.feed(deep_delta("b", usage))
    assert failure.value.code == "upstream_stream_broken" and "255 levels" in failure.value.message
    # Its delta never reached the client, and the usage it carried is not taken either.
    assert (meter.delivered_deltas, meter.usage) == (1, None)


@pytest.mark.parametrize(("client_wants_usage", "usage"), [(True, b"null"), (True, None), (False, None)])
def test_a_deep_chunk_that_needs_no_rewriting_is_relayed_as_is(client_wants_usage: bool,
                                                              usage: bytes | None) -> None:
    meter = StreamMeter(client_wants_usage)
    line = deep_delta("b", usage)
    assert meter.feed(line) == line + b"\n\n"
    assert meter.delivered_deltas == 1


def test_usage_is_still_taken_from_a_chunk_stripped_of_it() -> None:
    meter = StreamMeter(client_wants_usage=False)
    assert meter.feed(delta("a")) is not None
    assert meter.feed(data({"id": "c", "choices": [], "usage": USAGE})) is None
    out = meter.feed(delta("b", usage=USAGE))
    assert out is not None and b"usage" not in out
    assert (meter.delivered_deltas, meter.usage) == (2, USAGE)


@pytest.mark.parametrize("line", [b"data: not json", b"data: 5", b"data: [1, 2]", b": keep-alive",
                                  b"event: ping", b"data: {\"id\": \"c\"}", b"data: {\"choices\": null}"])
def test_lines_that_carry_no_chunk_are_skipped_as_before(line: bytes) -> None:
    meter = StreamMeter(client_wants_usage=False)
    out = meter.feed(line)
    assert out is None or out == line + b"\n\n"
    assert (meter.delivered_deltas, meter.usage, meter.failed) == (0, None, None)
