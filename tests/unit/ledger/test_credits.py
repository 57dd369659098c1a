"""Credits as exact integers of micro-units: parsing, formatting and the one rounding rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditgate.ledger.credits import (
    DECIMALS_MAX,
    MICROS_MAX,
    MICROS_PER_UNIT,
    UNITS_MAX,
    AmountError,
    check_micros,
    divide_round_half_up,
    format_amount,
    parse_amount,
)


@pytest.mark.parametrize(("text", "micros"), [
    ("12.5", 12_500_000),
    ("0", 0),
    ("0.000001", 1),
    ("1", 1_000_000),
    ("  7.25 ", 7_250_000),
    ("+3", 3_000_000),
    ("001.100", 1_100_000),
    ("0.02", 20_000),
    (str(UNITS_MAX), MICROS_MAX),
    (42, 42_000_000),
])
def test_parse_amount_reads_decimal_strings_exactly(text: str | int, micros: int) -> None:
    assert parse_amount(text) == micros


def test_the_sub_unit_is_one_micro_credit() -> None:
    # $0.02 per 1M tokens at 1 credit = $0.01 is 2 credits per 1M tokens: 2 micro-credits a token.
    assert MICROS_PER_UNIT == 1_000_000
    assert parse_amount("2") // 1_000_000 == 2


@pytest.mark.parametrize(("text", "reason"), [
    ("NaN", "not a decimal number"),
    ("nan", "not a decimal number"),
    ("inf", "not a decimal number"),
    ("-Infinity", "not a decimal number"),
    ("1e3", "not a decimal number"),
    ("1E-2", "not a decimal number"),
    ("", "not a decimal number"),
    ("  ", "not a decimal number"),
    ("1.", "not a decimal number"),
    (".5", "not a decimal number"),
    ("1,5", "not a decimal number"),
    ("0x10", "not a decimal number"),
    ("1 000", "not a decimal number"),
    ("١٢", "not a decimal number"),  # Arabic-Indic digits: \d would match them without re.ASCII
    ("1.0000001", "more than 6 decimals"),
    ("-1", "must not be negative"),
    ("-0.000001", "must not be negative"),
    (str(UNITS_MAX + 1), "above the maximum"),
    (f"{UNITS_MAX}.000001", "above the maximum"),
    ("9" * 40, "above the maximum"),
])
def test_parse_amount_rejects_bad_input_with_a_message_naming_the_field(text: str, reason: str) -> None:
    with pytest.raises(AmountError) as raised:
        parse_amount(text, field="credits")
    message = str(raised.value)
    assert message.startswith("credits: ")
    assert reason in message


def test_a_huge_digit_string_is_an_amount_error_not_a_python_limit_error() -> None:
    # Python refuses int() of more than 4300 digits with a plain ValueError; the CLI only turns
    # AmountError into a one-line message, so anything else would surface as a traceback.
    with pytest.raises(AmountError, match="above the maximum") as raised:
        parse_amount("1" * 5000, field="credits")
    assert len(str(raised.value)) < 200, "the message echoes the input in full"


@pytest.mark.parametrize("value", [1.5, 0.1, None, True, b"12", [1]])
def test_parse_amount_refuses_non_strings(value: object) -> None:
    with pytest.raises(AmountError, match=r"^amount: expected a decimal string"):
        parse_amount(value)  # type: ignore[arg-type]


def test_parse_amount_zero_and_negative_switches() -> None:
    with pytest.raises(AmountError, match="credits: must be greater than zero"):
        parse_amount("0.000000", field="credits", allow_zero=False)
    assert parse_amount("-2.5", allow_negative=True) == -2_500_000
    # Minus zero is zero, not a negative amount.
    assert parse_amount("-0") == 0


@pytest.mark.parametrize(("micros", "text"), [
    (12_500_000, "12.5"),
    (0, "0"),
    (1, "0.000001"),
    (1_000_000, "1"),
    (10_000, "0.01"),
    (-2_500_000, "-2.5"),
    (-1, "-0.000001"),
    (MICROS_MAX, str(UNITS_MAX)),
])
def test_format_amount_is_the_shortest_exact_decimal(micros: int, text: str) -> None:
    assert format_amount(micros) == text


def test_format_amount_refuses_floats_and_bools() -> None:
    with pytest.raises(AssertionError):
        format_amount(1.5)  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        format_amount(True)


@given(st.integers(min_value=0, max_value=MICROS_MAX))
def test_format_then_parse_round_trips(micros: int) -> None:
    text = format_amount(micros)
    assert parse_amount(text) == micros
    assert "e" not in text.lower()
    if "." in text:
        assert len(text.split(".")[1]) <= DECIMALS_MAX
        assert not text.endswith("0")


@pytest.mark.parametrize(("numerator", "denominator", "expected"), [
    (5, 2, 3),     # 2.5 -> 3: halves go up
    (7, 2, 4),     # 3.5 -> 4 (not banker's rounding to even)
    (3, 2, 2),     # 1.5 -> 2
    (1, 2, 1),     # 0.5 -> 1
    (1, 3, 0),     # 0.333 -> 0
    (2, 3, 1),     # 0.667 -> 1
    (10, 5, 2),    # exact
    (0, 7, 0),
    (149, 100, 1),
    (150, 100, 2),
    (-5, 2, -3),   # negative halves round away from zero
    (-1, 3, 0),
])
def test_divide_round_half_up(numerator: int, denominator: int, expected: int) -> None:
    assert divide_round_half_up(numerator, denominator) == expected


@given(st.integers(min_value=0, max_value=10**24), st.integers(min_value=1, max_value=10**12))
def test_divide_round_half_up_is_within_half_a_unit(numerator: int, denominator: int) -> None:
    result = divide_round_half_up(numerator, denominator)
    # |result - n/d| <= 1/2, and exactly 1/2 only when rounding a half upwards.
    twice_error = 2 * result * denominator - 2 * numerator
    assert -denominator < twice_error <= denominator


def test_divide_round_half_up_refuses_a_zero_denominator() -> None:
    with pytest.raises(AssertionError):
        divide_round_half_up(1, 0)


def test_check_micros_names_the_field() -> None:
    assert check_micros(5, field="credits") == 5
    with pytest.raises(AmountError, match="^credits: must not be negative"):
        check_micros(-1, field="credits")
    with pytest.raises(AmountError, match="^credits: must be greater than zero"):
        check_micros(0, field="credits", allow_zero=False)
    with pytest.raises(AmountError, match="^credits: above the maximum"):
        check_micros(MICROS_MAX + 1, field="credits")
    with pytest.raises(AmountError, match="^credits: expected an integer"):
        check_micros(1.0, field="credits")  # type: ignore[arg-type]
    with pytest.raises(AmountError, match="^credits: expected an integer"):
        check_micros(True, field="credits")
