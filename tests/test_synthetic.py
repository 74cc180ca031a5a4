"""The random models of bench/scale.py and scripts/gpu-check.sh: each named shape is the geometry it claims."""

import pytest
import torch
from conftest import ROOT

from biasprune.synthetic import SHAPES, chatml_tokenizer, n_parameters, random_model


def test_llama_3_8b_has_meta_llama_3_8b_s_published_parameter_count():
    assert n_parameters("llama-3-8b") == 8_030_261_248  # Meta-Llama-3-8B's model card: 8.03B


@pytest.mark.parametrize("shape", ["tiny", "smollm2-135m"])
def test_a_random_model_has_the_parameters_its_geometry_counts_and_the_tokenizer_fits(shape):
    tokenizer = chatml_tokenizer(ROOT / "resources" / "prompts")
    model = random_model(shape, tokenizer, dtype="bfloat16", seed=3)
    assert sum(p.numel() for p in model.parameters()) == n_parameters(shape, len(tokenizer))
    assert model.dtype == torch.bfloat16
    config = model.config
    assert config.vocab_size == max(SHAPES[shape]["vocab_size"], len(tokenizer))
    assert config.num_key_value_heads == SHAPES[shape]["num_key_value_heads"]
    ids = tokenizer("The price of a car is", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape == (1, ids.shape[1], config.vocab_size)
    if shape == "smollm2-135m":  # the embedded model's own count, tied embeddings and all
        assert n_parameters(shape, len(tokenizer)) == 134_515_008  # counted on the fetched model
