"""The most a request can use, before it runs.

Input: byte-level BPE tokenizers (GPT, Llama 3, Qwen, Mistral's tekken...) never produce more
tokens than the UTF-8 bytes they encode, and chat templates add a few tokens per message. The
request body as the client sent it is JSON: every message carries at least ``{"role":"","content":""}``
(about 30 bytes) around its text, and escaping only adds bytes, so **the byte length of the request
body bounds the prompt tokens including the template**, with no tokenizer at all. Images are the
one exception (a short URL can stand for a thousand tokens), so each image part adds
``image_tokens_max``.

Output: ``max_completion_tokens`` or ``max_tokens`` times ``n`` (and ``best_of`` for
completions). When the client sets no maximum, the deployment's default cap is used, and the
caller writes that cap into the upstream request so that the bound holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import InvalidInput

CHOICES_MAX: Final = 16
OUTPUT_TOKENS_MAX: Final = 1_000_000
IMAGE_TOKENS_MAX: Final = 2_000


@dataclass(frozen=True, slots=True)
class MaxUsage:
    input_tokens: int
    output_tokens: int
    # True when the client set no maximum and the default cap must be sent upstream.
    cap_applied: bool

    def meters(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "requests": 1}

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def max_usage(body: dict[str, Any], body_bytes: int, *, endpoint: str,
              max_tokens_default: int) -> MaxUsage:
    input_tokens = body_bytes + IMAGE_TOKENS_MAX * _image_parts(body.get("messages"))
    if endpoint == "embeddings":
        return MaxUsage(input_tokens, 0, False)
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    cap_applied = limit is None
    if cap_applied:
        limit = max_tokens_default
    elif isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= OUTPUT_TOKENS_MAX:
        raise InvalidInput(f"max_tokens must be an integer from 1 to {OUTPUT_TOKENS_MAX}",
                           param="max_tokens")
    choices = _count(body, "n") * (_count(body, "best_of") if endpoint == "completions" else 1)
    return MaxUsage(input_tokens, limit * choices, cap_applied)


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= CHOICES_MAX:
        raise InvalidInput(f"{name} must be an integer from 1 to {CHOICES_MAX}", param=name)
    return value


def _image_parts(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content
                         if isinstance(part, dict) and part.get("type") in ("image_url", "input_image",
                                                                             "input_audio"))
    return count
