"""Masks applied by hooks, by weight edits and through a saved pruned checkpoint agree; the model is restored."""

import copy

import pytest
import torch
from conftest import TINY_LLAMA

from biasprune.ablation import Mask, masked
from biasprune.hooks import hook_count, hooks
from biasprune.models import LINEARS, ModelAdapter, load_model


@pytest.fixture(scope="module", params=["tiny_llama_dir", "tiny_qwen2_dir"], ids=["llama", "qwen2"])
def tiny(request):
    """Each tiny family: the Llama, and the Qwen2 with q, k and v biases and its own tokenizer."""
    return load_model(request.getfixturevalue(request.param), device="cpu", dtype="float32")


def random_mask(model, unit, ablation="zero", seed=0):
    adapter, generator = ModelAdapter.of(model), torch.Generator().manual_seed(seed)
    if unit == "weights":
        keys = {
            f"{layer}.{name}": torch.rand(adapter.linear(layer, name).weight.shape, generator=generator) < 0.1
            for layer in range(adapter.n_layers)
            for name in LINEARS
        }
    elif unit == "neurons":
        keys = {
            f"{layer}": torch.rand(adapter.d_mlp, generator=generator) < 0.2
            for layer in range(adapter.n_layers)
        }
    else:
        keys = {"0": torch.tensor([True, False, False, True]), "1": torch.tensor([False, True, False, False])}
    return Mask(unit, keys, ablation)


def logits(model, tokenizer):
    ids = torch.tensor([tokenizer("I want to buy a car from Jamal. $")["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize(
    ("unit", "ablation"), [("weights", "zero"), ("neurons", "zero"), ("heads", "zero"), ("heads", "q_zero")]
)
def test_hooks_edits_and_a_saved_checkpoint_give_the_same_logits(tiny, tmp_path, unit, ablation):
    model, tokenizer = tiny
    mask = random_mask(model, unit, ablation)
    base = logits(model, tokenizer)
    with masked(model, mask, "hooks"):
        hooked = logits(model, tokenizer)
    with masked(model, mask, "edit"):
        edited = logits(model, tokenizer)
        model.save_pretrained(tmp_path / "pruned")
        tokenizer.save_pretrained(tmp_path / "pruned")
    reloaded, _ = load_model(tmp_path / "pruned", device="cpu", dtype="float32")
    assert not torch.allclose(hooked, base, atol=1e-4)
    torch.testing.assert_close(hooked, edited, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits(reloaded, tokenizer), edited, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("how", ["hooks", "edit"])
def test_model_is_bit_identical_after_a_masked_run_even_one_that_raised(tiny, how):
    model, tokenizer = tiny
    before = copy.deepcopy(model.state_dict())
    count = hook_count(model)
    for unit in ("weights", "neurons", "heads"):
        with masked(model, random_mask(model, unit), how):
            logits(model, tokenizer)
        with pytest.raises(RuntimeError), masked(model, random_mask(model, unit), how):
            raise RuntimeError("a failed evaluation")
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert hook_count(model) == count


@pytest.mark.parametrize("ablation", ["zero", "q_zero", "mean"])
def test_ablating_a_query_head_leaves_the_other_heads_of_its_group_alone(tiny, ablation):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    means = {"0": torch.arange(adapter.n_heads * adapter.head_dim, dtype=torch.float32)}
    mask = Mask("heads", {"0": torch.tensor([True, False, False, False])}, ablation, means)
    captured = []
    probe = {"blocks.0.attn.hook_z": lambda site, z: captured.append(z.detach().clone())}
    with hooks(adapter, probe):
        logits(model, tokenizer)
    with masked(model, mask, "hooks"), hooks(adapter, probe):
        logits(model, tokenizer)
    base, pruned = (z.view(*z.shape[:2], adapter.n_heads, adapter.head_dim) for z in captured[:2])
    assert adapter.kv_head(0) == adapter.kv_head(1)  # head 1 shares head 0's key/value head
    torch.testing.assert_close(pruned[:, :, 1:], base[:, :, 1:])
    assert not torch.allclose(pruned[:, :, 0], base[:, :, 0])
    if ablation == "mean":  # the probe runs after the replacement: the head's slice is its mean
        torch.testing.assert_close(pruned[:, :, 0], means["0"][: adapter.head_dim].expand_as(pruned[:, :, 0]))


def test_q_zero_also_zeroes_the_query_bias_where_the_model_has_one():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**TINY_LLAMA, vocab_size=50, attention_bias=True)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.bias.normal_()
    mask = Mask("heads", {"0": torch.tensor([False, True, False, False])}, "q_zero")
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad(), masked(model, mask, "hooks"):
        hooked = model(ids).logits
    with torch.no_grad(), masked(model, mask, "edit"):
        edited = model(ids).logits
        assert model.model.layers[0].self_attn.q_proj.bias[8:16].abs().sum() == 0
    torch.testing.assert_close(hooked, edited)
    assert model.model.layers[0].self_attn.q_proj.bias[8:16].abs().sum() > 0  # restored


def test_mean_ablation_without_the_mean_is_an_error(tiny):
    model, tokenizer = tiny
    with (
        pytest.raises(KeyError, match="needs their mean"),
        masked(model, Mask("heads", {"0": torch.tensor([True, False, False, False])}, "mean")),
    ):
        logits(model, tokenizer)
