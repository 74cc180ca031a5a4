"""Character spans of names become token positions through the tokenizer's offset mapping."""

import pytest

from biasprune.prompts import render
from biasprune.tokens import (
    chat_prompt,
    default_system_line,
    encode_with_name_positions,
    span_token_positions,
)


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


def test_default_system_line_is_read_from_the_chat_template(tiny_tokenizer):
    """The tiny ChatML template opens with the user turn; SmolLM2's adds a system turn when none is given
    (its template, abridged), Llama-3's does not."""
    assert not default_system_line(tiny_tokenizer)
    smollm2 = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    llama3 = (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
        "'<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    )
    original = tiny_tokenizer.chat_template
    try:
        tiny_tokenizer.chat_template = smollm2
        assert default_system_line(tiny_tokenizer)
        tiny_tokenizer.chat_template = llama3
        assert not default_system_line(tiny_tokenizer)
    finally:
        tiny_tokenizer.chat_template = original
