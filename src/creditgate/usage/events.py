"""Reading usage events: CloudEvents 1.0 in structured JSON mode, checked field by field.

Checking is hand-written rather than done with a schema library because it runs for every event
on the ingestion hot path, and because a bad event must become a per-event rejection with the
field named, never a failed batch.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from creditgate.clock import parse_iso
from creditgate.errors import CreditgateError
from creditgate.text import CONTROL_CHARACTERS, IDS

EVENT_TYPE: Final = "creditgate.usage"
SOURCE_LENGTH_MAX: Final = 256
EVENT_ID_LENGTH_MAX: Final = 128
MODEL_LENGTH_MAX: Final = 200
METERS_PER_EVENT_MAX: Final = 32
TAGS_PER_EVENT_MAX: Final = 16
TAG_VALUE_LENGTH_MAX: Final = 200
QUANTITY_MAX: Final = 10**15
LATENCY_MS_MAX: Final = 86_400_000
_METER: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_TAG_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Rejected(Exception):
    """An event that cannot be accepted; ``reason`` is a stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class UsageEvent(NamedTuple):
    """A checked event. A named tuple because ingestion builds a thousand per request."""

    source: str
    event_id: str
    org_id: str
    project_id: str | None
    key_id: str | None
    at_us: int
    model: str
    meters: dict[str, int]
    tags: dict[str, str]
    scope: str
    latency_ms: int | None


def _text(event: dict[str, Any], name: str, length_max: int) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value or len(value) > length_max or CONTROL_CHARACTERS.search(value):
        raise Rejected("invalid_field", f"{name}: required, 1 to {length_max} printable characters")
    return value


def parse_subject(subject: Any) -> tuple[str, str | None, str | None]:
    """``org_x``, ``org_x/project/prj_y``, ``org_x/key/key_z`` or both, in that order."""
    if not isinstance(subject, str) or len(subject) > 300:
        raise Rejected("invalid_field", "subject: required, the organization id optionally "
                                        "followed by /project/<id> and /key/<id>")
    parts = subject.split("/")
    org_id, project_id, key_id = parts[0], None, None
    rest = parts[1:]
    if rest[:1] == ["project"] and len(rest) >= 2:
        project_id, rest = rest[1], rest[2:]
    if rest[:1] == ["key"] and len(rest) >= 2:
        key_id, rest = rest[1], rest[2:]
    if rest or not all(IDS.match(part) for part in (org_id, project_id, key_id) if part is not None):
        raise Rejected("invalid_field", f"subject: {subject[:80]!r} is not org[/project/<id>][/key/<id>]")
    return org_id, project_id, key_id


# Names and values already checked, so that the common case costs a set lookup (bounded: cleared
# when full). Kept apart: a value that passed as a tag value must not pass
# as a tag name, nor a tag name as a meter name (their rules differ).
_KNOWN_METERS: set[str] = set()
_KNOWN_TAG_NAMES: set[str] = set()
_KNOWN_TAG_VALUES: set[str] = set()
_KNOWN_MAX: Final = 10_000


def _remember(known: set[str], text: str) -> None:
    if len(known) >= _KNOWN_MAX:
        known.clear()
    known.add(text)


def _meters(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not value or len(value) > METERS_PER_EVENT_MAX:
        raise Rejected("invalid_field", f"data.meters: 1 to {METERS_PER_EVENT_MAX} meters required")
    for name, quantity in value.items():
        if name in _KNOWN_METERS and type(quantity) is int and 0 <= quantity <= QUANTITY_MAX:
            continue
        if not _METER.match(name):
            raise Rejected("invalid_field", f"data.meters: {name[:70]!r} is not a meter name")
        if type(quantity) is not int or not 0 <= quantity <= QUANTITY_MAX:
            raise Rejected("invalid_field", f"data.meters.{name}: must be an integer from 0 to {QUANTITY_MAX}")
        _remember(_KNOWN_METERS, name)
    return value


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > TAGS_PER_EVENT_MAX:
        raise Rejected("invalid_field", f"data.tags: at most {TAGS_PER_EVENT_MAX} tags")
    for name, tag in value.items():
        # isinstance first: a list or object value is unhashable, and must be refused, not crash.
        if name in _KNOWN_TAG_NAMES and isinstance(tag, str) and tag in _KNOWN_TAG_VALUES:
            continue
        if not _TAG_NAME.match(name):
            raise Rejected("invalid_field", f"data.tags: {name[:70]!r} is not a tag name")
        if not isinstance(tag, str) or len(tag) > TAG_VALUE_LENGTH_MAX or CONTROL_CHARACTERS.search(tag):
            raise Rejected("invalid_field", f"data.tags.{name}: must be text of at most "
                                            f"{TAG_VALUE_LENGTH_MAX} printable characters")
        _remember(_KNOWN_TAG_NAMES, name)
        _remember(_KNOWN_TAG_VALUES, tag)
    return value


def parse_event(raw: Any, *, now_us: int, late_us: int, ahead_us: int,
                memo: dict[Any, Any] | None = None) -> UsageEvent:
    """Check one event; raise :class:`Rejected` naming the first bad field.

    ``memo`` (one per batch) remembers parsed subjects and times, which repeat within a batch.
    """
    memo = {} if memo is None else memo
    if not isinstance(raw, dict):
        raise Rejected("invalid_field", "event: expected a JSON object")
    if raw.get("specversion") != "1.0":
        raise Rejected("invalid_field", 'specversion: must be "1.0"')
    if raw.get("type") != EVENT_TYPE:
        raise Rejected("invalid_field", f"type: must be {EVENT_TYPE!r}")
    content_type = raw.get("datacontenttype")
    if content_type is not None and content_type != "application/json":
        raise Rejected("invalid_field", 'datacontenttype: must be "application/json" if given')
    event_id = _text(raw, "id", EVENT_ID_LENGTH_MAX)
    source = _text(raw, "source", SOURCE_LENGTH_MAX)
    subject = raw.get("subject")
    parsed = memo.get(("s", subject)) if isinstance(subject, str) else None
    if parsed is None:
        parsed = memo[("s", subject)] = parse_subject(subject)
    org_id, project_id, key_id = parsed
    text = raw.get("time")
    at_us = memo.get(("t", text)) if isinstance(text, str) else None
    if at_us is None:
        try:
            at_us = memo[("t", text)] = parse_iso(text, field="time")  # type: ignore[arg-type]
        except CreditgateError as error:
            raise Rejected("invalid_field", error.message) from None
    if at_us < now_us - late_us:
        raise Rejected("too_old", "time: older than the late-event window of "
                                  f"{late_us // 86_400_000_000} days")
    if at_us > now_us + ahead_us:
        raise Rejected("in_future", f"time: more than {ahead_us // 1_000_000} s in the future")
    data = raw.get("data")
    if not isinstance(data, dict):
        raise Rejected("invalid_field", "data: expected an object with model and meters")
    model = _text(data, "model", MODEL_LENGTH_MAX)
    scope = data.get("scope", "inference")
    if scope not in ("inference", "training"):
        raise Rejected("invalid_field", "data.scope: inference or training")
    latency = data.get("latency_ms")
    if latency is not None and (type(latency) is not int or not 0 <= latency <= LATENCY_MS_MAX):
        raise Rejected("invalid_field", f"data.latency_ms: an integer from 0 to {LATENCY_MS_MAX}")
    return UsageEvent(source, event_id, org_id, project_id, key_id, at_us, model,
                      _meters(data.get("meters")), _tags(data.get("tags")), scope, latency)
