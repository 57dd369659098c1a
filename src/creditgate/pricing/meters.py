"""Meters: the named usage dimensions that prices attach to, each with a unit.

Meters are disjoint: one unit of usage is counted on exactly one meter. ``input_tokens`` are the
prompt tokens that were *not* served from a cache, ``cached_input_tokens`` those that were; the
prompt size used for long-context tiers is their sum. ``output_tokens`` excludes reasoning tokens,
which are counted on ``reasoning_tokens`` (providers bill them at the output price, and cards
usually do the same, but they may differ).

Quantities are non-negative Python ints in the meter's unit. The set is extensible: build a
registry with :meth:`MeterRegistry.with_meters`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from creditgate.errors import InvalidInput

# No single usage record counts more than this on one meter (a million times the largest context
# window in use today). It keeps products of quantity and price far from any realistic overflow
# of the 64-bit columns the charges end up in.
USAGE_QUANTITY_MAX: Final = 10**15
METER_NAME_LENGTH_MAX: Final = 64
_METER_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")

Usage = Mapping[str, int]
"""Quantities by meter name for one usage record, e.g. ``{"input_tokens": 1200}``."""


@dataclass(frozen=True, slots=True)
class Meter:
    name: str
    unit: str
    # The N of "price per N units" that prices are normalized to and shown with.
    per_default: int
    description: str = ""
    # Counted in the prompt size that selects long-context tiers and bounds estimates.
    prompt: bool = False
    # Counted against max_output_tokens in estimates.
    completion: bool = False

    def __post_init__(self) -> None:
        assert _METER_NAME.match(self.name) and len(self.name) <= METER_NAME_LENGTH_MAX, self.name
        assert self.unit and self.per_default >= 1, self


BUILTIN_METERS: Final = (
    Meter("input_tokens", "token", 1_000_000, "prompt tokens not served from a cache", prompt=True),
    Meter("cached_input_tokens", "token", 1_000_000, "prompt tokens served from a cache",
          prompt=True),
    Meter("output_tokens", "token", 1_000_000, "generated tokens, reasoning excluded",
          completion=True),
    Meter("reasoning_tokens", "token", 1_000_000, "hidden reasoning tokens", completion=True),
    Meter("requests", "request", 1, "calls, for per-request fees"),
    Meter("images", "image", 1, "generated images"),
    Meter("audio_seconds", "second", 1, "seconds of audio transcribed or generated"),
    Meter("characters", "character", 1, "characters of input text, e.g. speech synthesis"),
    Meter("compute_ms", "millisecond", 1_000, "measured CPU or GPU time of a local model"),
    Meter("training_gpu_hours", "gpu_hour", 1, "GPU hours of a training or fine-tuning job"),
)


class MeterRegistry:
    """An immutable set of meters by name."""

    __slots__ = ("_meters",)

    def __init__(self, meters: Iterable[Meter]) -> None:
        by_name: dict[str, Meter] = {}
        for meter in meters:
            assert meter.name not in by_name, f"meter {meter.name} registered twice"
            by_name[meter.name] = meter
        self._meters: Mapping[str, Meter] = by_name

    def with_meters(self, *meters: Meter) -> MeterRegistry:
        """A new registry with extra meters (the built-in set is never changed in place)."""
        return MeterRegistry((*self._meters.values(), *meters))

    def __contains__(self, name: object) -> bool:
        return name in self._meters

    def __iter__(self) -> Iterator[Meter]:
        return iter(self._meters.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._meters)

    def units(self) -> frozenset[str]:
        return frozenset(meter.unit for meter in self._meters.values())

    def get(self, name: str, *, field: str = "meter") -> Meter:
        meter = self._meters.get(name)
        if meter is None:
            raise InvalidInput(f"{field}: unknown meter {name!r} (known: {', '.join(self._meters)})",
                               param=field)
        return meter

    def prompt_meters(self) -> tuple[str, ...]:
        return tuple(meter.name for meter in self._meters.values() if meter.prompt)

    def completion_meters(self) -> tuple[str, ...]:
        return tuple(meter.name for meter in self._meters.values() if meter.completion)

    def check_usage(self, usage: Mapping[str, object], *, field: str = "usage") -> dict[str, int]:
        """Validate a usage mapping from outside (API body, file): known meters, whole counts."""
        if not isinstance(usage, Mapping):
            raise InvalidInput(f"{field}: expected a mapping of meter to quantity", param=field)
        checked: dict[str, int] = {}
        for name, quantity in usage.items():
            meter_field = f"{field}.{name}"
            self.get(str(name), field=meter_field)
            if isinstance(quantity, bool) or not isinstance(quantity, int):
                raise InvalidInput(f"{meter_field}: expected a whole number, got {quantity!r}",
                                   param=meter_field)
            if not 0 <= quantity <= USAGE_QUANTITY_MAX:
                raise InvalidInput(f"{meter_field}: must be from 0 to {USAGE_QUANTITY_MAX}",
                                   param=meter_field)
            checked[str(name)] = quantity
        return checked

    def parse_usage(self, text: str, *, field: str = "usage") -> dict[str, int]:
        """Parse ``"input_tokens=1000,output_tokens=200"`` (the CLI form)."""
        usage: dict[str, int] = {}
        for part in (piece.strip() for piece in text.split(",")):
            if not part:
                continue
            name, separator, value = part.partition("=")
            name = name.strip()
            if not separator:
                raise InvalidInput(f"{field}: {part!r} is not meter=quantity", param=field)
            if name in usage:
                raise InvalidInput(f"{field}: meter {name!r} given twice", param=field)
            digits = value.strip().replace("_", "")
            if not digits.isdigit():
                raise InvalidInput(f"{field}.{name}: {value.strip()!r} is not a whole number",
                                   param=f"{field}.{name}")
            usage[name] = int(digits)
        if not usage:
            raise InvalidInput(f"{field}: no meter=quantity pairs given", param=field)
        return self.check_usage(usage, field=field)


DEFAULT_METERS: Final = MeterRegistry(BUILTIN_METERS)
