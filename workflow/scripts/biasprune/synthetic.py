"""Randomly initialised Llama-architecture models of a named shape, with a small byte-level BPE tokenizer
trained on the study's own prompt files: what the test suite, the scale benchmark and the GPU check run on
(no hub, no weights to download). Their answers are noise; their shapes, dtypes and memory are real."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# Geometry of each shape (Llama architecture). `llama-3-8b` is Meta-Llama-3-8B-Instruct's exactly.
SHAPES = {
    "tiny": dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=0,  # the tokenizer's own size
        max_position_embeddings=256,
    ),
    # growing sizes for bench/scale.py (one vocabulary, SmolLM2's size, so only the blocks grow)
    "smollm2-135m": dict(  # the embedded model's geometry
        tie_word_embeddings=True,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        max_position_embeddings=8192,
    ),
    "0.5b": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=49152,
        max_position_embeddings=8192,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=49152,
        max_position_embeddings=8192,
    ),
    "2b": dict(
        hidden_size=2560,
        intermediate_size=6912,
        num_hidden_layers=28,
        num_attention_heads=20,
        num_key_value_heads=4,
        vocab_size=49152,
        max_position_embeddings=8192,
    ),
    "llama-3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        rope_theta=500000.0,
    ),
}

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def trained_tokenizer(
    corpus: Iterable[str],
    pre_tokenizer,
    vocab_size: int,
    specials: list[str],
    bos: str,
    eos: str,
    pad: str,
    template: str,
):
    """A byte-level BPE tokenizer trained on `corpus` (fast: it has offset mappings)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet)
    tokenizer.train_from_iterator(list(corpus), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=bos, eos_token=eos, pad_token=pad, chat_template=template
    )


def chatml_tokenizer(prompts_dir: str | Path, vocab_size: int = 600):
    """A small ChatML tokenizer (like SmolLM2's) trained on the files of `prompts_dir`."""
    from tokenizers import pre_tokenizers

    corpus = [path.read_text() for path in sorted(Path(prompts_dir).iterdir()) if path.is_file()]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return trained_tokenizer(
        corpus,
        byte_level,
        vocab_size,
        specials,
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
        CHATML_TEMPLATE,
    )


def model_config(config_class, shape: str | dict, tokenizer, **changes):
    """The config of `shape` (a name in SHAPES or a geometry) for `tokenizer`: its special tokens, and a
    vocabulary at least as large as the tokenizer's."""
    geometry = dict(SHAPES[shape] if isinstance(shape, str) else shape) | changes
    geometry["vocab_size"] = max(geometry.get("vocab_size", 0), len(tokenizer))
    return config_class(
        **geometry,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def random_model(shape: str | dict, tokenizer, dtype: str = "float32", device: str = "cpu", seed: int = 0):
    """A randomly initialised Llama of `shape`, built directly in `dtype` on `device` (an 8B model in
    bfloat16 on a GPU never passes through CPU memory)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    config = model_config(LlamaConfig, shape, tokenizer)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.eval()


def save_random_model(folder: str | Path, shape: str | dict, tokenizer, **kwargs) -> Path:
    """`random_model` saved with its tokenizer, like a fetched model (a `local` registry entry can use it)."""
    folder = Path(folder)
    random_model(shape, tokenizer, **kwargs).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def n_parameters(shape: str | dict, tokenizer_size: int = 0) -> int:
    """Parameters of a Llama of `shape` for a tokenizer of `tokenizer_size` tokens, counted from the geometry."""
    g = SHAPES[shape] if isinstance(shape, str) else shape
    d, m, n = g["hidden_size"], g["intermediate_size"], g["num_hidden_layers"]
    kv = d // g["num_attention_heads"] * g["num_key_value_heads"]
    vocab = max(g["vocab_size"], tokenizer_size)
    block = 2 * d * d + 2 * d * kv + 3 * d * m + 2 * d
    return n * block + (1 if g.get("tie_word_embeddings") else 2) * vocab * d + d
