"""The most a request can use, before it runs.

Input: byte-level BPE tokenizers (GPT, Llama 3, Qwen, Mistral's tekken...) never produce more
tokens than the UTF-8 bytes they encode, and chat templates add a few tokens per message. The
request body as the client sent it is JSON: every message carries at least ``{"role":"","content":""}``
(about 30 bytes) around its text, and escaping only adds bytes, so **the byte length of the request
body bounds the prompt tokens including the template**, with no tokenizer at all. Images are the
one exception (a short URL can stand for a thousand tokens), so each image part adds
``image_tokens_max``.

Output: ``max_completion_tokens`` or ``max_tokens`` (the larger, when a chat request sets both:
an upstream may honour either) times ``n``; for completions, ``max_tokens`` times ``n`` times
``best_of`` times the number of prompts in a batched ``prompt``. The legacy completions API has no
``max_completion_tokens``, so there only ``max_tokens`` counts. When the client sets no maximum,
the deployment's default cap is used, and the caller writes that cap into the upstream request so
that the bound holds.

Media parts other than text (images, audio, video, files) add ``IMAGE_TOKENS_MAX`` each. That is
a bound for images at usual sizes, not for every file a part may name; an upstream that reports
more than was held is charged the excess after the fact (see :mod:`creditgate.gateway.settlement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from creditgate.errors import InvalidInput

CHOICES_MAX: Final = 16
OUTPUT_TOKENS_MAX: Final = 1_000_000
IMAGE_TOKENS_MAX: Final = 2_000
PROMPTS_MAX: Final = 2_048  # a batched completions prompt, as OpenAI's API allows
# Content parts whose bytes bound their tokens; any other part (image_url, input_audio, file,
# video_url, ...) counts as media.
TEXT_PARTS: Final = frozenset({"text", "input_text", "refusal"})


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
    input_tokens = body_bytes + IMAGE_TOKENS_MAX * _media_parts(body.get("messages"))
    if endpoint == "embeddings":
        return MaxUsage(input_tokens, 0, False)
    names = ("max_tokens",) if endpoint == "completions" else ("max_completion_tokens", "max_tokens")
    limits = [_count(body, name, OUTPUT_TOKENS_MAX) for name in names if body.get(name) is not None]
    cap_applied = not limits
    limit = max_tokens_default if cap_applied else max(limits)
    choices = _count(body, "n", CHOICES_MAX)
    if endpoint == "completions":
        choices *= _count(body, "best_of", CHOICES_MAX) * _prompts(body.get("prompt"))
    return MaxUsage(input_tokens, limit * choices, cap_applied)


def _prompts(prompt: Any) -> int:
    """How many prompts a completions request carries: each gets its own ``n`` completions. A
    list of strings or of token lists is a batch; a string or one token list is one prompt."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
        if len(prompt) > PROMPTS_MAX:
            raise InvalidInput(f"prompt may hold at most {PROMPTS_MAX} prompts", param="prompt")
        return len(prompt)
    return 1


def _count(body: dict[str, Any], name: str, most: int) -> int:
    value = body.get(name)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidInput(f"{name} must be an integer from 1 to {most}", param=name)
    return value


def _media_parts(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    count = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            count += sum(1 for part in content if isinstance(part, dict) and not _is_text_part(part))
    return count


def _is_text_part(part: dict[str, Any]) -> bool:
    kind = part.get("type")  # any JSON value: a list or an object is not a text part (nor hashable)
    return isinstance(kind, str) and kind in TEXT_PARTS
