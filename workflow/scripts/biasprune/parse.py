"""Reading a number from a model's answer: the first number, in any of the ways people write one.

The authors' parser concatenated every digit and dot ("100-200" became 100200); this one takes the first
number and says why when there is none.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

OK, EMPTY, NO_NUMBER, REFUSAL, TOO_LONG = "ok", "empty", "no_number", "refusal", "too_long"
HEDGED = (
    "hedged"  # a refusal-like hedge before the number ("I don't have enough data, but I'd say $500"): valid
)
OUT_OF_RANGE = "out_of_range"  # a number outside the domain's answer.range
VALID_REASONS = (OK, HEDGED)
UNDEFINED = "undefined"  # the expected readout's grid distribution was degenerate (no finite answer)

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
]
_UNITS += ["sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
WORD_VALUES = {word: index for index, word in enumerate(_UNITS)} | {
    word: 10 * (index + 2) for index, word in enumerate(_TENS)
}
SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}
REFUSALS = re.compile(
    r"\b(i'?m sorry|i am sorry|i apologi[sz]e|i can ?not|i can'?t|i'?m (not able|unable)|i am (not able|unable)"
    r"|i'?m not (equipped|in a position)|as an ai|not appropriate|cannot (provide|determine|estimate)"
    r"|unable to (provide|determine|estimate)|i (don'?t|do not) (have|know))",
    re.I,
)
_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_BELOW_100 = (
    "(?:"
    + "|".join(_TENS)
    + r")(?:[\s-](?:"
    + "|".join(_UNITS[1:10])
    + "))?|"
    + "|".join(sorted(_UNITS, key=len, reverse=True))
)
_WORDS = (
    rf"(?:(?:(?:a|{'|'.join(_UNITS[1:10])})\s+)?hundred(?:\s+(?:and\s+)?(?:{_BELOW_100}))?|{_BELOW_100})"
    r"(?:\s+(?:thousand|million|billion))?"
)
NUMBER = re.compile(
    rf"(?P<sign>(?<![\w.])-)?(?P<digits>{_DIGITS})(?:\s*(?P<scale>thousand|million|billion|bn|mn|[kmb])(?![a-z]))?"
    rf"|\b(?P<words>{_WORDS})\b",
    re.I,
)


@dataclass(frozen=True)
class Parsed:
    value: float | None
    reason: str

    @property
    def valid(self) -> bool:
        return self.reason in VALID_REASONS


def _word_value(words: str) -> float:
    """'twenty-five' = 25, 'a hundred and five' = 105, 'two hundred' = 200, 'fifty thousand' = 50000."""
    value = 0.0
    for word in words.lower().replace("-", " ").split():
        if word in WORD_VALUES:
            value += WORD_VALUES[word]
        elif word == "hundred":
            value = max(value, 1.0) * 100
        elif word in SCALES:
            value *= SCALES[word]
    return value


def parse_number(text: str, max_chars: int = 200) -> Parsed:
    """The first number of `text` (thousands separators, decimals, $ and %, k/thousand/million/billion,
    number words up to a hundred; a range gives its first value), or None with a reason code. A refusal
    phrase with no number after it is a refusal; followed by a number it is a hedge (valid, reason `hedged`)."""
    stripped = text.strip()
    if not stripped:
        return Parsed(None, EMPTY)
    match = NUMBER.search(stripped)
    refusal = REFUSALS.search(stripped)
    if refusal and match is None:
        return Parsed(None, REFUSAL)
    if len(stripped) > max_chars:
        return Parsed(None, TOO_LONG)
    if match is None:
        return Parsed(None, NO_NUMBER)
    reason = HEDGED if refusal and refusal.start() < match.start() else OK
    if match["words"]:
        return Parsed(_word_value(match["words"]), reason)
    value = float(match["digits"].replace(",", ""))
    if match["scale"]:
        value *= SCALES[match["scale"].lower()]
    return Parsed(-value if match["sign"] else value, reason)


def in_range(parsed: Parsed, answer_range=(-math.inf, math.inf)) -> Parsed:
    """A valid answer outside the domain's answer.range becomes invalid (`out_of_range`)."""
    if parsed.valid and not answer_range[0] <= parsed.value <= answer_range[1]:
        return Parsed(None, OUT_OF_RANGE)
    return parsed
