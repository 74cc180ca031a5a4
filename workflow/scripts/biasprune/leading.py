"""The number an answer starts with, read from its text: the exact readout's reading of a complete answer
(`leading_number`, also how a sampled answer is classified when it is compared with the exact readout) and its
test for when an open answer's number is settled (`settled`: no continuation can change it), which decides
whether a node of the decoding tree ends the number or stays open.
"""

from __future__ import annotations

import re

from .parse import NUMBER, parse_number

NOT_LEADING = "no_leading_number"  # the answer starts with something else: undecided whether a number follows
_SCALES = ("k", "m", "b", "bn", "mn", "thousand", "million", "billion")
# Continuations that would change the leading number of a text if it were still open: more digits, a
# thousands group, a decimal part, a scale word (whole, or completing a started one), a letter that undoes a
# scale ("15km" is 15).
_PROBES = tuple(
    dict.fromkeys(
        ["0", "5", ",000", "000", ".5", "a", " a"]
        + [sep + word + end for word in _SCALES for sep in ("", " ") for end in ("", " ", "a")]
        + [word[cut:] + end for word in _SCALES for cut in range(1, len(word)) for end in ("", " ")]
    )
)


def leading_state(text: str) -> str:
    """'pending' (only whitespace or a dollar sign so far), 'number' (starts with a digit) or 'other'."""
    rest = text.lstrip()
    if rest.startswith("$"):
        rest = rest[1:].lstrip()
    if not rest:
        return "pending"
    return "number" if rest[0].isdigit() else "other"


def leading_number(text: str, max_chars: int = 200) -> tuple[float | None, str]:
    """The number an answer starts with and the parser's reason: how `exact` reads a complete answer, and
    how a sampled answer is classified when it is compared with `exact`."""
    parsed = parse_number(text, max_chars)
    if leading_state(text) == "number":
        return parsed.value, parsed.reason
    return None, NOT_LEADING if parsed.valid else parsed.reason


def settled(text: str) -> bool:
    """Whether no continuation can change the number `text` starts with.

    Decided from what follows the number when that is plain (a space then a symbol, a digit or a word that
    no scale starts with: "250 per", "12 5", "15k "), else by trying every continuation that could change
    it (_PROBES: digits, thousands groups, decimals, scale words, a letter that undoes a scale)."""
    match = NUMBER.search(text)
    if match is None or match["words"]:
        return _probed(text)
    tail = text[match.end() :]
    if match["scale"]:
        return bool(tail)  # "15k " is settled, "15k" is not ("15km" is 15)
    rest = tail.lstrip()
    if not rest or rest[0] in ",.":
        return False if not rest else _probed(text)
    if not rest[0].isalpha():
        return True  # a symbol or, after a space, a digit: nothing can join the number any more
    run = re.match(r"[a-zA-Z]+", rest).group().lower()
    complete = len(run) < len(rest)
    if complete or not any(word.startswith(run) for word in _SCALES):
        return True  # a whole word that is not a scale (a scale would be in the match), or no scale's start
    return _probed(text)


def _probed(text: str) -> bool:
    value = parse_number(text).value
    return all(parse_number(text + probe).value == value for probe in _PROBES)
