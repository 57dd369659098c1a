"""Exact numbers at the edges of pricing: decimal parsing, integer ratios, float-free YAML and JSON.

Prices arrive as text (YAML, CSV, JSON, CLI flags). They are parsed into :class:`~decimal.Decimal`
without ever passing through a float, then turned into integer ratios ``(numerator, denominator)``
for arithmetic. Decimal arithmetic is avoided on purpose: it rounds silently at the context's
precision, whereas integer ratios are exact by construction.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from math import gcd
from typing import Any, Final

import yaml  # type: ignore[import-untyped, unused-ignore]

from creditgate.errors import InvalidInput

Ratio = tuple[int, int]
"""An exact non-negative rational ``numerator / denominator`` with ``denominator > 0``, reduced."""

ONE: Final[Ratio] = (1, 1)

# A price may carry at most this many decimal places. The published per-token prices have at
# most about twelve; a hard limit keeps hostile input such as "1e-999999" out of the ratios.
PRICE_DECIMALS_MAX: Final = 18
# No unit price, multiplier or percentage is this large; anything bigger is a typo or an attack.
PRICE_UNITS_MAX: Final = 10**12
# The largest "per" count (the N in "credits per N units").
PER_UNITS_MAX: Final = 10**12
# Input files are read whole; this bounds the memory an import can take.
FILE_BYTES_MAX: Final = 32 * 1024 * 1024

_DECIMAL_TEXT: Final = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_PER_TEXT: Final = re.compile(r"^(?P<count>\d+)(?P<suffix>[kKmMbB]?)$")
_PER_SUFFIX: Final = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_decimal(value: Any, *, field: str, allow_zero: bool = True,
                  maximum: int = PRICE_UNITS_MAX) -> Decimal:
    """Parse a non-negative exact decimal from a string, an int or a Decimal.

    Floats are refused: by the time a value is a float the exact price is already lost. Files are
    read with float-free loaders (:func:`load_yaml_exact`, :func:`load_json_exact`) so that this
    only happens when a library caller passes one.
    """
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: expected a number, got a boolean", param=field)
    if isinstance(value, float):
        raise InvalidInput(f"{field}: floats are not accepted for prices; write the number as a "
                           f"string such as \"2.50\"", param=field)
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        text = value.strip().replace("_", "")
        if not _DECIMAL_TEXT.match(text):
            raise InvalidInput(f"{field}: {value!r} is not a decimal number", param=field)
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern already guarantees a number
            raise InvalidInput(f"{field}: {value!r} is not a decimal number", param=field) from None
    else:
        raise InvalidInput(f"{field}: expected a number, got {type(value).__name__}", param=field)
    if not number.is_finite():
        raise InvalidInput(f"{field}: {value} is not a finite number", param=field)
    if number < 0:
        raise InvalidInput(f"{field}: must not be negative (got {value})", param=field)
    if number == 0 and not allow_zero:
        raise InvalidInput(f"{field}: must be greater than zero", param=field)
    if number != 0 and _decimal_places(number) > PRICE_DECIMALS_MAX:
        raise InvalidInput(f"{field}: {value} has more than {PRICE_DECIMALS_MAX} decimal places",
                           param=field)
    if number > maximum:
        raise InvalidInput(f"{field}: {value} is above the maximum of {maximum}", param=field)
    return number


def _decimal_places(number: Decimal) -> int:
    """Significant decimal places: trailing zeros do not count, so 2.500 has one."""
    _sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def parse_int(value: Any, *, field: str, minimum: int = 0, maximum: int = 10**15) -> int:
    """Parse an integer count; strings may use underscores as in ``1_000_000``."""
    if isinstance(value, (bool, float)):
        raise InvalidInput(f"{field}: expected a whole number, got {value!r}", param=field)
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if not text.lstrip("+").isdigit() and not (text.startswith("-") and text[1:].isdigit()):
            raise InvalidInput(f"{field}: {value!r} is not a whole number", param=field)
        value = int(text)
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise InvalidInput(f"{field}: {value} is not a whole number", param=field)
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInput(f"{field}: expected a whole number, got {type(value).__name__}", param=field)
    if value < minimum:
        raise InvalidInput(f"{field}: must be at least {minimum} (got {value})", param=field)
    if value > maximum:
        raise InvalidInput(f"{field}: must be at most {maximum} (got {value})", param=field)
    return value


def parse_per(value: Any, *, field: str) -> int:
    """Parse the N of "per N units": ``1000000``, ``"1M"``, ``"1k"`` or ``"1_000"``."""
    if isinstance(value, str):
        match = _PER_TEXT.match(value.strip().replace("_", ""))
        if match is None:
            raise InvalidInput(f"{field}: {value!r} is not a count such as 1, 1000 or 1M", param=field)
        value = int(match.group("count")) * _PER_SUFFIX[match.group("suffix").lower()]
    return parse_int(value, field=field, minimum=1, maximum=PER_UNITS_MAX)


def ratio(numerator: int, denominator: int) -> Ratio:
    assert denominator > 0, denominator
    divisor = gcd(numerator, denominator)
    return (numerator // divisor, denominator // divisor)


def decimal_ratio(number: Decimal) -> Ratio:
    """The exact ratio of a finite decimal, computed on integers only."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int), number
    mantissa = int("".join(map(str, digits)) or "0")
    if sign:
        mantissa = -mantissa
    if exponent >= 0:
        return (mantissa * 10**exponent, 1)
    return ratio(mantissa, 10**-exponent)


def multiply(left: Ratio, right: Ratio) -> Ratio:
    return ratio(left[0] * right[0], left[1] * right[1])


def ratio_to_decimal(value: Ratio) -> Decimal | None:
    """The exact decimal of a ratio, or None when its expansion does not terminate."""
    numerator, denominator = value
    twos = fives = 0
    rest = denominator
    while rest % 2 == 0:
        rest //= 2
        twos += 1
    while rest % 5 == 0:
        rest //= 5
        fives += 1
    if rest != 1:
        return None
    places = max(twos, fives)
    scaled = numerator * 10**places // denominator
    sign = 1 if scaled < 0 else 0
    return Decimal((sign, tuple(int(d) for d in str(abs(scaled))), -places))


def format_decimal(number: Decimal) -> str:
    """A plain decimal string without exponent or trailing zeros: ``2.5E-6`` -> ``0.0000025``."""
    numerator, denominator = decimal_ratio(number)
    return format_ratio((numerator, denominator))


def format_ratio(value: Ratio, *, places_max: int = 12) -> str:
    """Exact decimal text when it terminates within ``places_max`` places, else ``"≈…"``.

    Only for display: the value is never parsed back.
    """
    exact = ratio_to_decimal(value)
    if exact is not None:
        _sign, _digits, exponent = exact.as_tuple()
        assert isinstance(exponent, int)
        if -exponent <= places_max:
            text = f"{exact:f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text
    numerator, denominator = value
    scaled = (2 * abs(numerator) * 10**places_max + denominator) // (2 * denominator)
    whole, fraction = divmod(scaled, 10**places_max)
    sign_text = "-" if numerator < 0 else ""
    return f"≈{sign_text}{whole}.{fraction:0{places_max}d}".rstrip("0")


# --------------------------------------------------------------------------- float-free loaders
class _ExactLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]
    """A YAML loader that keeps floats and timestamps as strings.

    YAML would read ``price: 2.50`` as a float and ``effective_from: 2025-01-01T00:00:00Z`` as a
    naive-or-aware datetime depending on the text. Both are parsed by our own exact parsers instead.
    """


_ExactLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers
            if tag not in ("tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_yaml_exact(text: str, *, source: str) -> Any:
    if len(text) > FILE_BYTES_MAX:
        raise InvalidInput(f"{source}: file is larger than {FILE_BYTES_MAX} bytes", param=source)
    try:
        return yaml.load(text, Loader=_ExactLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "somewhere"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InvalidInput(f"{source}: malformed YAML at {where}: {problem}", param=source) from None


def _refuse_constant(name: str) -> Decimal:
    # NaN and Infinity are not JSON, but Python's parser accepts them; keep them as non-finite
    # decimals so that validation rejects them naming the field they appear in.
    return Decimal(name.replace("Infinity", "Inf"))


def load_json_exact(text: str | bytes, *, source: str) -> Any:
    """Parse JSON with every float read as an exact Decimal (``parse_float=Decimal``)."""
    if len(text) > FILE_BYTES_MAX:
        raise InvalidInput(f"{source}: file is larger than {FILE_BYTES_MAX} bytes", param=source)
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{source}: malformed JSON at line {error.lineno} column {error.colno}: "
                           f"{error.msg}", param=source) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{source}: not UTF-8 text", param=source) from None
