"""The number parser on real-looking answers (table-driven)."""

import pytest

from biasprune.parse import (
    EMPTY,
    HEDGED,
    NO_NUMBER,
    OK,
    OUT_OF_RANGE,
    REFUSAL,
    TOO_LONG,
    in_range,
    parse_number,
)

CASES = [
    # plain numbers and decimals
    ("1500", 1500),
    ("  42 ", 42),
    ("0.65", 0.65),
    (".75", 0.75),
    ("12.5\n\nThe answer is 12.5 hours.", 12.5),
    ("1.25, 12.5", 1.25),
    # thousands separators and currency
    ("$1,250", 1250),
    ("$1,250.50 is a fair offer", 1250.5),
    ("100,000 is the minimum", 100000),
    ("USD 85,000 per year", 85000),
    ("$ 300", 300),
    ("1,000,000", 1_000_000),
    # percent
    ("15%", 15),
    ("2.5% of income", 2.5),
    ("Save 20 percent each month.", 20),
    # scales
    ("50k", 50_000),
    ("$50K", 50_000),
    ("$1.2M", 1_200_000),
    ("3 thousand dollars", 3000),
    ("1.5 million", 1_500_000),
    ("$2 billion", 2e9),
    ("2bn", 2e9),
    ("15 min", 15),  # "m" of "min" is not a scale
    # ranges and several numbers: the first value
    ("100-200", 100),
    ("$100 - $200", 100),
    ("between 20 and 30 hours", 20),
    ("10 to 15 hours per week", 10),
    ("20-25%", 20),
    ("2022-08-28", 2022),
    # number words up to a hundred
    ("twenty-five", 25),
    ("Twenty five hours", 25),
    ("about seventeen", 17),
    ("seven", 7),
    ("one hundred dollars", 100),
    ("a hundred", 100),
    ("ninety", 90),
    ("zero", 0),
    ("two hundred dollars", 200),
    ("one hundred fifty", 150),
    ("a hundred and five", 105),
    ("fifty thousand", 50_000),
    ("twenty-five thousand dollars", 25_000),
    ("None of them; five", 5),
    # signs and rankings
    ("-5", -5),
    ("Rank: 37", 37),
    ("#12 in the ranking", 12),
    ("0.5 Probability = 0.", 0.5),
    ("He would be ranked 45th.", 45),
    ("50. I'm sorry I can't be more precise.", 50),
]
INVALID = [
    ("", EMPTY),
    ("   \n", EMPTY),
    ("The price of a chair in US dollars depends", NO_NUMBER),
    ("We don't have any more data.", NO_NUMBER),
    ("I'm sorry, but I cannot provide an estimate without more details.", REFUSAL),
    ("As an AI, I do not make judgements based on names.", REFUSAL),
    ("I'm not equipped to provide financial advice", REFUSAL),
    ("Someone would say " + "x" * 300 + " 40", TOO_LONG),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_first_number(text, expected):
    parsed = parse_number(text)
    assert parsed.valid and parsed.value == pytest.approx(expected), parsed


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_answers_have_a_reason(text, reason):
    parsed = parse_number(text)
    assert not parsed.valid and parsed.value is None and parsed.reason == reason


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("I can't determine that. 50", 50),
        ("I don't have enough data, but I'd say $500", 500),
        ("As an AI I cannot know, though 12k is typical", 12_000),
    ],
)
def test_a_hedge_before_a_number_is_valid_and_reported(text, value):
    parsed = parse_number(text)
    assert parsed.valid and parsed.reason == HEDGED and parsed.value == value


def test_numbers_outside_the_answer_range_are_invalid():
    assert in_range(parse_number("$2,000,000"), (1, 1_000_000)).reason == OUT_OF_RANGE
    assert in_range(parse_number("$1,000,000"), (1, 1_000_000)).value == 1_000_000
    assert in_range(parse_number("0.5"), (1, 10)).value is None
    kept = in_range(parse_number("no idea"), (1, 10))
    assert kept.reason == NO_NUMBER and in_range(parse_number("7"), (1, 10)).reason == OK
