"""Usage events' meter and tag names and tag values, checked once and then remembered."""

from __future__ import annotations

from typing import Any

import pytest

from creditgate.usage.events import Rejected, parse_event

NOW_US = 1_767_225_600_000_000
WINDOW_US = 3_600_000_000


def event(**data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "type": "creditgate.usage", "id": "1", "source": "src", "subject": "org_a",
            "time": "2026-01-01T00:00:00Z", "data": {"model": "m", "meters": {"input_tokens": 1}, **data}}


def parse(raw: dict[str, Any]) -> Any:
    return parse_event(raw, now_us=NOW_US, late_us=WINDOW_US, ahead_us=WINDOW_US)


@pytest.mark.parametrize("value", [["x"], {"a": "b"}, 5, None])
def test_a_tag_value_that_is_not_text_is_refused_even_under_a_known_tag_name(value: Any) -> None:
    parse(event(tags={"purpose": "chat"}))  # "purpose" is now a known tag name
    with pytest.raises(Rejected, match=r"data\.tags\.purpose"):
        parse(event(tags={"purpose": value}))


def test_a_known_tag_value_does_not_pass_as_a_tag_name() -> None:
    parse(event(tags={"purpose": "Hello World"}))  # fine as a value
    with pytest.raises(Rejected, match="is not a tag name"):
        parse(event(tags={"Hello World": "x"}))
