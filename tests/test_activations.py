"""Hooks, the activation cache and attribution on the tiny random Llama, against independent computations."""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT, readout_settings
from scipy import stats as scipy_stats

from biasprune.activations import (
    CACHE_SCHEMA,
    attribution_batch,
    build_sequence,
    cache_activations,
    cache_batch,
    write_cache,
)
from biasprune.decoding import encode_left_padded
from biasprune.grid import Candidates, expected_answer, grid_log_probs
from biasprune.hooks import hook_count, hooks, split_site
from biasprune.io import read_provenance
from biasprune.models import LINEAR_INPUTS, LINEARS, ModelAdapter, load_model
from biasprune.prompts import prompt_table
from biasprune.readouts import read_answers
from biasprune.specs import Answer
from biasprune.study import load_domain, load_names
from biasprune.tokens import chat_prompt, encode_with_name_positions

PROMPTS = ROOT / "resources" / "prompts"
GROUPS = ("White", "Black")
ANSWER = Answer(unit="USD", prefix="$", range=(1, 1e6), grid=(20000.0, 40000.0, 60000.0, 80000.0, 100000.0))


@pytest.fixture(scope="module", params=["tiny_llama_dir", "tiny_qwen2_dir"], ids=["llama", "qwen2"])
def tiny(request):
    """Each tiny family: the Llama, and the Qwen2 with q, k and v biases and its own tokenizer."""
    return load_model(
        request.getfixturevalue(request.param), device="cpu", dtype="float32", attn_implementation="eager"
    )


@pytest.fixture(scope="module")
def rows():
    names = load_names(
        PROMPTS / "names.tsv",
        GROUPS,
        ["Emily", "Todd", "Sarah", "Ryan", "D'Andre", "DaShawn", "Ebony", "Jamal"],
    )
    return prompt_table(load_domain("hiring", PROMPTS), ["lawyer"], names, GROUPS, "").to_pylist()


@pytest.fixture(scope="module")
def answers(tiny, rows):
    model, tokenizer = tiny
    columns = read_answers(model, tokenizer, rows, ANSWER, readout_settings(max_new_tokens=4))
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def sequences(tokenizer, rows, answers):
    from biasprune.activations import baseline_answer

    return [
        build_sequence(tokenizer, row, baseline_answer([a], ANSWER.grid, ANSWER.prefix), ANSWER.prefix)
        for row, a in zip(rows, answers, strict=True)
    ]


def cached(table, prompt_id, layer, site, reduction):
    match = [
        r
        for r in table.to_pylist()
        if (r["prompt_id"], r["layer"], r["site"], r["reduction"]) == (prompt_id, layer, site, reduction)
    ]
    assert len(match) == 1
    return np.array(match[0]["values"])


def test_hooks_are_removed_after_a_normal_run_and_after_a_hook_raised(tiny):
    model, tokenizer = tiny
    adapter, before = ModelAdapter.of(model), hook_count(model)
    ids = torch.tensor([tokenizer("Hi Amy")["input_ids"]])
    seen = []

    def see(site, x):
        seen.append(x)

    with hooks(adapter, {"blocks.1.mlp.hook_post": see, "blocks.0.attn.hook_pattern": [see, see]}):
        assert hook_count(model) == before + 3
        model(ids)
    assert hook_count(model) == before and len(seen) == 3

    def boom(site, x):
        raise RuntimeError("hook failed")

    with (
        pytest.raises(RuntimeError, match="hook failed"),
        hooks(adapter, {"blocks.0.ln1.hook_normalized": boom}),
    ):
        model(ids)
    assert hook_count(model) == before


def test_a_hook_function_is_told_its_site(tiny):
    model, tokenizer = tiny
    ids = torch.tensor([tokenizer("Hi Amy")["input_ids"]])
    sites = []

    def record(site, x):
        sites.append((site, split_site(site)))

    with (
        torch.no_grad(),
        hooks(ModelAdapter.of(model), {f"blocks.{layer}.attn.hook_z": record for layer in (1, 0)}),
    ):
        model(ids)
    assert sites == [
        ("blocks.0.attn.hook_z", (0, "attn.hook_z")),
        ("blocks.1.attn.hook_z", (1, "attn.hook_z")),
    ]


def test_hook_can_replace_an_activation(tiny):
    model, tokenizer = tiny
    ids = torch.tensor([tokenizer("Hi Amy")["input_ids"]])
    with torch.no_grad():
        base = model(ids).logits
        with hooks(
            ModelAdapter.of(model),
            {f"blocks.{layer}.mlp.hook_post": lambda site, x: torch.zeros_like(x) for layer in range(2)},
        ):
            zeroed = model(ids).logits
        with torch.no_grad():
            saved = [layer.mlp.down_proj.weight.clone() for layer in model.model.layers]
            for layer in model.model.layers:
                layer.mlp.down_proj.weight.zero_()
            reference = model(ids).logits
            for layer, weight in zip(model.model.layers, saved, strict=True):
                layer.mlp.down_proj.weight.copy_(weight)
    assert not torch.allclose(base, zeroed) and torch.allclose(zeroed, reference, atol=1e-6)


@pytest.mark.parametrize("positions", ["all", "name_and_answer"])
def test_wanda_sums_equal_the_materialised_inputs_of_every_linear_layer(tiny, rows, answers, positions):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    batch = sequences(tokenizer, rows, answers)[:3]
    table = cache_batch(model, tokenizer, batch, positions)
    for sequence in batch:
        inputs = {}
        handles = [
            adapter.linear(layer, name).register_forward_pre_hook(
                lambda module, args, key=(layer, name), store=inputs: store.__setitem__(
                    key, args[0][0].detach()
                )
            )
            for layer in range(adapter.n_layers)
            for name in LINEARS
        ]
        with torch.no_grad():
            model(torch.tensor([sequence.ids]))  # alone, no padding: an independent path
        for handle in handles:
            handle.remove()
        chosen = (
            range(len(sequence.ids)) if positions == "all" else sorted({*sequence.name, *sequence.answer})
        )
        for (layer, name), x in inputs.items():
            expected = (x[list(chosen)] ** 2).sum(0).numpy()
            got = cached(table, sequence.prompt_id, layer, LINEAR_INPUTS[name], "sumsq")
            np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-5, err_msg=f"{layer}.{name}")
        embedding = model.model.embed_tokens(torch.tensor(sequence.ids)).detach()
        assert not torch.allclose(inputs[1, "q_proj"], embedding, atol=1e-3)  # the real input of layer 1


def test_name_attention_equals_eager_attention_weights(tiny, rows, answers):
    model, tokenizer = tiny
    batch = sequences(tokenizer, rows, answers)[:3]
    table = cache_batch(model, tokenizer, batch, "all")
    for sequence in batch:
        assert len(sequence.name) >= 2  # hiring names the candidate twice
        with torch.no_grad():
            attentions = model(torch.tensor([sequence.ids]), output_attentions=True).attentions
        for layer, pattern in enumerate(attentions):
            mass = pattern[0][:, sequence.answer][:, :, sequence.name].sum(-1).mean(-1).numpy()
            np.testing.assert_allclose(
                cached(table, sequence.prompt_id, layer, "attn.hook_pattern", "name_mass"),
                mass,
                rtol=1e-4,
                atol=1e-6,
            )


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_attribution_ranks_true_head_ablation_effects_on_the_gap(tiny, rows, temperature):
    """At the readout's own temperature (0.6: the sampler's, which the expected readout reads at; 1: none
    given): the first-order effects rank the true effects of zeroing each head on the gap that readout
    measures."""
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    candidates = Candidates.build(tokenizer, ANSWER.grid, ANSWER.prefix)
    white = torch.tensor([row["race"] == "White" for row in rows])
    chats = [chat_prompt(tokenizer, row["text"], "$") for row in rows]

    def gap(functions=None):
        with torch.no_grad(), hooks(adapter, functions or {}):
            answer, _ = expected_answer(
                grid_log_probs(
                    model, encode_left_padded(tokenizer, chats, "cpu"), candidates, 5, temperature
                ),
                ANSWER.grid,
            )
        return (answer[white].mean() - answer[~white].mean()).item()

    def zero_head(layer, head):
        def ablate(site, z):
            z = z.clone()
            z[..., head * adapter.head_dim : (head + 1) * adapter.head_dim] = 0
            return z

        return {f"blocks.{layer}.attn.hook_z": ablate}

    base = gap()
    true = [
        gap(zero_head(layer, head)) - base
        for layer in range(adapter.n_layers)
        for head in range(adapter.n_heads)
    ]
    readout = None if temperature == 1.0 else {"mode": "expected", "sample": {"temperature": temperature}}
    table = attribution_batch(
        model, tokenizer, rows, candidates, ANSWER.grid, ANSWER.prefix, readout
    ).to_pandas()
    heads = table[table["site"] == "attn.hook_z"]
    estimate = []
    for layer in range(adapter.n_layers):
        effect = np.stack(
            heads[heads["layer"] == layer]
            .set_index("prompt_id")
            .loc[[r["prompt_id"] for r in rows], "values"]
        )
        estimate += list(effect[white.numpy()].mean(0) - effect[~white.numpy()].mean(0))
    rho = scipy_stats.spearmanr(true, estimate).statistic
    assert rho > 0.7, (rho, true, estimate)


def test_attribution_is_the_derivative_of_the_expected_readout_at_its_temperature(tiny, rows):
    """Scaling a head's output by 1 - eps moves each prompt's expected answer (at the sampler's temperature,
    0.6) by eps x its attribution, to first order: a central finite difference per head and prompt agrees
    with the attribution, which the readout at temperature 1 does not."""
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    candidates = Candidates.build(tokenizer, ANSWER.grid, ANSWER.prefix)
    chats = [chat_prompt(tokenizer, row["text"], "$") for row in rows[:4]]
    batch = encode_left_padded(tokenizer, chats, "cpu")

    def answers(layer=None, head=None, scale=1.0):
        def scaled(site, z):
            z = z.clone()
            z[..., head * adapter.head_dim : (head + 1) * adapter.head_dim] *= scale
            return z

        functions = {} if layer is None else {f"blocks.{layer}.attn.hook_z": scaled}
        with torch.no_grad(), hooks(adapter, functions):
            log_probs = grid_log_probs(model, batch, candidates, len(ANSWER.grid), 0.6)
            return expected_answer(log_probs, ANSWER.grid)[0].double().numpy()

    eps = 1e-2
    readout = {"mode": "expected", "sample": {"temperature": 0.6}}
    at = {
        label: attribution_batch(
            model, tokenizer, rows[:4], candidates, ANSWER.grid, ANSWER.prefix, given
        ).to_pandas()
        for label, given in (("0.6", readout), ("1", None))
    }
    for layer in range(adapter.n_layers):
        finite = np.stack(
            [
                (answers(layer, head, 1 - eps) - answers(layer, head, 1 + eps)) / (2 * eps)
                for head in range(adapter.n_heads)
            ],
            axis=1,
        )  # (prompts, heads): the change of each answer per unit of the head removed
        for label, table in at.items():
            heads = table[(table["site"] == "attn.hook_z") & (table["layer"] == layer)]
            effect = np.stack(heads.set_index("prompt_id").loc[[r["prompt_id"] for r in rows[:4]], "values"])
            error = np.abs(effect - finite).max() / np.abs(finite).max()
            # measured: 1-2% at 0.6 (float32 noise), 38-46% for the readout at temperature 1
            assert (error < 0.05) == (label == "0.6"), (label, layer, error)


def test_cache_round_trip_keeps_schema_rows_and_provenance(tmp_path, tiny, rows, answers):
    model, tokenizer = tiny
    batches = list(
        cache_activations(model, tokenizer, rows[:3], answers, ANSWER, "all", batch_size=2, attribution=True)
    )
    count = write_cache(iter(batches), tmp_path / "cache.parquet", {"model": "tiny", "positions": "all"})
    table = pq.read_table(tmp_path / "cache.parquet")
    assert table.schema.remove_metadata() == CACHE_SCHEMA and table.num_rows == count == sum(
        b.num_rows for b in batches
    )
    assert read_provenance(tmp_path / "cache.parquet") == {"model": "tiny", "positions": "all"}
    kinds = set(zip(table.column("site").to_pylist(), table.column("reduction").to_pylist(), strict=True))
    assert kinds == {
        ("ln1.hook_normalized", "sumsq"),
        ("attn.hook_z", "sumsq"),
        ("ln2.hook_normalized", "sumsq"),
        ("mlp.hook_post", "sumsq"),
        ("mlp.hook_post", "mean_name"),
        ("mlp.hook_post", "mean_answer"),
        ("attn.hook_z", "mean_name"),
        ("attn.hook_z", "mean_answer"),
        ("attn.hook_pattern", "name_mass"),
        ("mlp.hook_post", "attribution"),
        ("attn.hook_z", "attribution"),
    }
    assert set(table.column("prompt_id").to_pylist()) == {row["prompt_id"] for row in rows[:3]}


@pytest.mark.parametrize("fixture", ["tiny_tokenizer", "llama3_style_tokenizer"])
@pytest.mark.parametrize("name", ["D'Andre", "DaShawn", "Keyshawn", "Latonya"])
def test_name_positions_with_apostrophes_and_multi_token_names(request, fixture, name):
    tokenizer = request.getfixturevalue(fixture)
    row = prompt_table(
        load_domain("hiring", PROMPTS),
        ["lawyer"],
        [{"name": name, "race": "Black", "gender": "male"}],
        GROUPS,
        "",
    ).to_pylist()[0]
    spans = [(span["start"], span["end"]) for span in row["name_spans"]]
    ids, positions = encode_with_name_positions(tokenizer, row["text"], spans, prefix="$")
    assert len(positions) == 2
    for occurrence in positions:
        assert tokenizer.decode([ids[p] for p in occurrence]).strip() == name
    if fixture == "llama3_style_tokenizer":
        assert tokenizer.decode(ids[:1]) == "<|begin_of_text|>"


def test_greedy_head_order_equals_a_hand_loop_over_eager_attention(tiny, rows, answers):
    """The authors' greedy selection, re-implemented with plain o_proj pre-hooks and output_attentions."""
    from biasprune.greedy import greedy_order

    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    batch = sequences(tokenizer, rows, answers)
    races = np.array([row["race"] for row in rows])
    steps = 4
    expected = []
    for _ in range(steps):
        handles = []
        for layer in range(adapter.n_layers):
            heads = [h for at, h in expected if at == layer]

            def zero(module, args, heads=heads):
                x = args[0].clone()
                for head in heads:
                    x[..., head * adapter.head_dim : (head + 1) * adapter.head_dim] = 0
                return (x,)

            handles.append(adapter.linear(layer, "o_proj").register_forward_pre_hook(zero))
        mass = np.zeros((len(batch), adapter.n_layers, adapter.n_heads))
        try:
            for index, sequence in enumerate(batch):
                with torch.no_grad():
                    attentions = model(torch.tensor([sequence.ids]), output_attentions=True).attentions
                for layer, pattern in enumerate(attentions):
                    mass[index, layer] = pattern[0][:, sequence.answer][:, :, sequence.name].sum(-1).mean(-1)
        finally:
            for handle in handles:
                handle.remove()
        score = mass[races == "White"].mean(0) + mass[races == "Black"].mean(0)
        for layer, head in expected:
            score[layer, head] = -np.inf
        expected.append(tuple(int(i) for i in np.unravel_index(np.argmax(score), score.shape)))
    order = greedy_order(model, tokenizer, batch, races, GROUPS, steps, batch_size=3)
    assert order == expected
    assert len(set(order)) == steps
