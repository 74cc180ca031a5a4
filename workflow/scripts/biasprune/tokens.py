"""From characters to tokens: chat formatting and the token positions of a name."""

from __future__ import annotations

from collections.abc import Sequence


def chat_prompt(tokenizer, message: str, prefix: str = "") -> str:
    """One user turn in the model's chat template, the assistant turn opened and pre-filled with `prefix`."""
    chat = [{"role": "user", "content": message}]
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) + prefix


def default_system_line(tokenizer) -> bool:
    """Whether the chat template puts a system turn before a conversation that has none (SmolLM2's and
    Qwen2.5's do; Llama-3's does not): the prompts the model sees then carry that line too."""
    marker = "\u2063biasprune\u2063"
    text = chat_prompt(tokenizer, marker)
    return "system" in text[: text.index(marker)].lower()


def span_token_positions(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]
) -> list[list[int]]:
    """For each character span, the indices of the tokens that overlap it (offsets: per-token char ranges).

    Tokens with empty ranges (special tokens) never match; a token that covers a leading space and the
    first letters of the name does.
    """
    positions = []
    for start, end in spans:
        hits = [index for index, (lo, hi) in enumerate(offsets) if hi > lo and lo < end and hi > start]
        if not hits:
            raise ValueError(f"no token overlaps characters {start}-{end}")
        positions.append(hits)
    return positions


def encode_with_name_positions(tokenizer, message: str, spans: Sequence[tuple[int, int]], prefix: str = ""):
    """Token ids of the chat-formatted prompt and, per name occurrence, the token positions of the name.

    `spans` are character spans in the user message (as in the prompt table); they are shifted to where
    the message sits in the chat text and mapped with the tokenizer's offset mapping (a fast tokenizer).
    """
    text = chat_prompt(tokenizer, message, prefix)
    shift = text.rfind(message)
    if shift < 0:
        raise ValueError("the chat template changed the user message; cannot locate the name")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    shifted = [(start + shift, end + shift) for start, end in spans]
    return encoded["input_ids"], span_token_positions(encoded["offset_mapping"], shifted)
