"""The model adapter and loading, on a tiny randomly initialised Llama (no network)."""

import pytest
import torch

from biasprune.errors import ConfigError
from biasprune.models import LINEARS, ModelAdapter, greedy_answer, load_model, resolve_device
from biasprune.tokens import chat_prompt


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu", dtype="float32")


def test_adapter_reports_the_geometry_of_the_model(tiny):
    model, _ = tiny
    adapter = ModelAdapter.of(model)
    assert (adapter.n_layers, adapter.n_heads, adapter.n_kv_heads, adapter.head_dim) == (2, 4, 2, 8)
    assert (adapter.d_model, adapter.d_mlp) == (32, 48)
    shapes = {name: tuple(adapter.linear(1, name).weight.shape) for name in LINEARS}
    assert shapes == {
        "q_proj": (32, 32),
        "k_proj": (16, 32),
        "v_proj": (16, 32),
        "o_proj": (32, 32),
        "gate_proj": (48, 32),
        "up_proj": (48, 32),
        "down_proj": (32, 48),
    }
    assert adapter.linear(1, "down_proj") is model.model.layers[1].mlp.down_proj
    assert [adapter.kv_head(head) for head in range(4)] == [0, 0, 1, 1]
    assert adapter.describe()["n_parameters"] == sum(p.numel() for p in model.parameters())


def test_adapter_refuses_an_unknown_architecture():
    class GPTLike(torch.nn.Module):
        config = None

    with pytest.raises(ConfigError, match="architectures: expected one of"):
        ModelAdapter.of(GPTLike())


def test_loading_is_float32_eval_mode_with_left_padding(tiny):
    model, tokenizer = tiny
    assert model.dtype == torch.float32 and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_resolve_device_defaults_to_float32_on_cpu():
    assert resolve_device("cpu", "auto") == ("cpu", torch.float32)
    assert resolve_device("cuda", "auto") == ("cuda", torch.bfloat16)
    assert resolve_device("cpu", "bfloat16") == ("cpu", torch.bfloat16)


def test_greedy_answer_is_deterministic_and_continues_the_prefix(tiny):
    model, tokenizer = tiny
    first = greedy_answer(model, tokenizer, "I want to buy a car from Jamal.", "$", max_new_tokens=5)
    assert first == greedy_answer(model, tokenizer, "I want to buy a car from Jamal.", "$", max_new_tokens=5)
    assert first
    # One step of greedy decoding is the argmax of the next-token logits after the pre-filled prompt.
    ids = tokenizer(
        chat_prompt(tokenizer, "Hi Amy", "$"), return_tensors="pt", add_special_tokens=False
    ).input_ids
    with torch.no_grad():
        expected = model(ids).logits[0, -1].argmax().item()
    assert greedy_answer(model, tokenizer, "Hi Amy", "$", max_new_tokens=1) == tokenizer.decode([expected])
