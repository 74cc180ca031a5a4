"""Character spans of names become token positions through the tokenizer's offset mapping."""

import pytest

from biasprune.prompts import render
from biasprune.tokens import chat_prompt, encode_with_name_positions, span_token_positions


def test_span_token_positions_by_hand():
    # tokens: "<s>" (special, empty range), "Hi", " Da", "Shawn", "!", " Da", "Shawn"
    offsets = [(0, 0), (0, 2), (2, 5), (5, 10), (10, 11), (11, 14), (14, 19)]
    assert span_token_positions(offsets, [(3, 10), (12, 19)]) == [[2, 3], [5, 6]]
    with pytest.raises(ValueError, match="no token overlaps"):
        span_token_positions(offsets, [(30, 35)])


def test_name_positions_decode_to_the_name(tiny_tokenizer):
    template = "We pay {name} as a {variation}. What salary for {name}?"
    message, spans = render(template, "lawyer", "DeShawn")
    ids, positions = encode_with_name_positions(tiny_tokenizer, message, spans, prefix="$")
    assert (
        ids
        == tiny_tokenizer(chat_prompt(tiny_tokenizer, message, "$"), add_special_tokens=False)["input_ids"]
    )
    assert len(positions) == 2 and positions[0][-1] < positions[1][0]
    for occurrence in positions:
        assert occurrence == list(range(occurrence[0], occurrence[-1] + 1))  # contiguous
        assert tiny_tokenizer.decode([ids[index] for index in occurrence]).strip() == "DeShawn"
