"""The most a request can use, before it runs: a true upper bound for what the upstream can do."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditgate.errors import InvalidInput
from creditgate.gateway.estimate import IMAGE_TOKENS_MAX, PROMPTS_MAX, MaxUsage, max_usage

DEFAULT_CAP = 256


def bound(body: dict[str, object], endpoint: str = "chat") -> MaxUsage:
    return max_usage(body, len(orjson.dumps(body)), endpoint=endpoint, max_tokens_default=DEFAULT_CAP)


@given(st.lists(st.text(), min_size=1, max_size=8))
def test_the_input_bound_is_never_below_the_utf8_bytes_of_the_prompt(texts: list[str]) -> None:
    # A byte-level BPE tokenizer never makes more tokens than the bytes it encodes.
    body = {"model": "m", "messages": [{"role": "user", "content": text} for text in texts]}
    assert bound(body).input_tokens >= sum(len(text.encode()) for text in texts)


def test_a_chat_request_that_sets_both_limits_holds_the_larger() -> None:
    # The upstream may honour either field; the hold must cover the one it picks.
    usage = bound({"model": "m", "messages": [], "max_completion_tokens": 1, "max_tokens": 900, "n": 2})
    assert (usage.output_tokens, usage.cap_applied) == (1800, False)


def test_a_batched_completions_prompt_multiplies_the_output_bound() -> None:
    base = {"model": "m", "max_tokens": 10, "n": 2, "best_of": 3}
    assert bound({**base, "prompt": "one"}, "completions").output_tokens == 60
    assert bound({**base, "prompt": ["a", "b", "c", "d"]}, "completions").output_tokens == 240
    assert bound({**base, "prompt": [[1, 2], [3]]}, "completions").output_tokens == 120
    assert bound({**base, "prompt": [1, 2, 3]}, "completions").output_tokens == 60  # one token list


def test_completions_know_no_max_completion_tokens_so_the_default_cap_applies() -> None:
    usage = bound({"model": "m", "prompt": "x", "max_completion_tokens": 1}, "completions")
    assert (usage.output_tokens, usage.cap_applied) == (DEFAULT_CAP, True)


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "10", True, 1_000_001])
def test_each_limit_is_checked_under_its_own_name(name: str, value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        bound({"model": "m", "messages": [], name: value})
    assert refused.value.param == name


def test_too_many_prompts_are_refused_naming_prompt() -> None:
    with pytest.raises(InvalidInput) as refused:
        bound({"model": "m", "prompt": ["x"] * (PROMPTS_MAX + 1), "max_tokens": 1}, "completions")
    assert refused.value.param == "prompt"


def test_every_content_part_that_is_not_text_adds_the_media_bound() -> None:
    parts = [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}},
             {"type": "file", "file": {"file_id": "f"}}, {"type": "video_url", "video_url": {"url": "v"}},
             {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}], "max_tokens": 1}
    assert bound(body).input_tokens == len(orjson.dumps(body)) + 4 * IMAGE_TOKENS_MAX
