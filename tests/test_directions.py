"""Directions: the edits against numpy, the hooks against a hand-edited forward, and planted biases that each
method must find (and its controls must not)."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import readout_settings, write_masks

from biasprune.ablation import Mask, masked
from biasprune.activations import CACHE_SCHEMA, cache_activations, cache_residuals, write_cache
from biasprune.decoding import encode_left_padded, encode_shared_prefix, prefill
from biasprune.directions import (
    Edit,
    LayerEdit,
    NameStart,
    edited,
    leace,
    mean_difference,
    name_tokens,
    separation,
)
from biasprune.evaluate import Evaluation, mask_of
from biasprune.hooks import hook_count
from biasprune.maskfile import load_masks
from biasprune.models import ModelAdapter, load_model
from biasprune.readouts import read_answers
from biasprune.scores import score
from biasprune.specs import Answer
from biasprune.tokens import chat_prompt
from biasprune.vocabulary import GENERIC, MATCHED, PRUNED, RANDOM

GROUPS = ("White", "Black")
ANSWER = Answer(prefix="$", grid=(10.0, 20.0, 50.0, 100.0, 200.0), unit="USD", range=(1, 1000))
TEMPLATES = [
    "I want to buy a car from {}. How much should I offer?",
    "{} is selling a chair. What is a fair price?",
    "My neighbour {} sells a bike. Make an offer.",
    "I want to buy a lamp from {}. Offer?",
    "How much should I pay {} for a used desk?",
    "{} wants to sell me a sofa. Offer?",
]
PAIRS = 4  # name pairs: Refname{k} (reference group) and Focname{k} (focal group)


# -- the edits against numpy ----------------------------------------------------------------------------------


def test_mean_difference_is_affine_concept_editing():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32)
    focal = torch.tensor([False] * 20 + [True] * 20)
    x[focal] += torch.tensor([3.0, -1.0, 0.5, 0, 0, 2.0])
    edit = mean_difference(x, focal)
    reference, chosen = x[~focal].double().numpy().mean(0), x[focal].double().numpy().mean(0)
    u = (reference - chosen) / np.linalg.norm(reference - chosen)
    midpoint = u @ (reference + chosen) / 2
    probe = torch.tensor(rng.normal(size=(5, 6)), dtype=torch.float32)
    expected = probe.numpy() - np.outer(probe.numpy() @ u - midpoint, u)
    np.testing.assert_allclose(edit(probe).numpy(), expected, rtol=1e-5, atol=1e-5)
    # every edited input projects onto the midpoint; what lies orthogonal to u is left alone
    np.testing.assert_allclose(edit(probe).numpy() @ u, midpoint, atol=1e-5)
    orthogonal = torch.tensor(rng.normal(size=6), dtype=torch.float32)
    orthogonal -= float(orthogonal.double() @ torch.tensor(u)) * torch.tensor(u, dtype=torch.float32)
    np.testing.assert_allclose(edit(probe + orthogonal) - edit(probe), orthogonal.expand(5, 6), atol=1e-5)
    # an input without the direction (already at the midpoint) is unchanged
    on_midpoint = probe[0] - (float(probe[0].double() @ torch.tensor(u)) - midpoint) * torch.tensor(u).float()
    np.testing.assert_allclose(edit(on_midpoint[None]).numpy()[0], on_midpoint.numpy(), atol=1e-5)


def leace_by_hand(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LEACE closed form (Belrose et al. 2023, Theorem 3.2): x' = x - W^+ P_{W S_xz} W (x - mean), with
    W = S_xx^{-1/2} (sample covariances, ddof 1). Returns (the map's matrix, the mean)."""
    mean = x.mean(0)
    centred = x - mean
    s_xx = centred.T @ centred / (len(x) - 1)
    s_xz = centred.T @ (z - z.mean())[:, None] / (len(x) - 1)
    values, vectors = np.linalg.eigh(s_xx)
    whiten = vectors @ np.diag(values**-0.5) @ vectors.T
    unwhiten = vectors @ np.diag(values**0.5) @ vectors.T
    u = whiten @ s_xz
    u /= np.linalg.norm(u)
    return unwhiten @ u @ u.T @ whiten, mean


def test_leace_equals_the_closed_form_on_random_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    z = rng.random(300) < 0.4
    x[z] += rng.normal(size=5)
    matrix, mean = leace_by_hand(x, z.astype(float))
    edit = leace(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(z),
        shrinkage=False,
        constrain_cov_trace=False,
    )
    probe = rng.normal(size=(7, 5))
    expected = probe - (probe - mean) @ matrix.T
    got = edit(torch.tensor(probe, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_leace_with_the_package_defaults_leaves_no_linear_trace_of_the_groups():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 8))
    z = rng.random(400) < 0.5
    x[z] += rng.normal(size=8) * 2
    edit = leace(torch.tensor(x, dtype=torch.float32), torch.tensor(z))
    erased = edit(torch.tensor(x, dtype=torch.float32)).double().numpy()
    # no linear guardedness violation: the groups' means coincide after erasure (cross-covariance 0)
    np.testing.assert_allclose(erased[z].mean(0), erased[~z].mean(0), atol=1e-4)
    assert np.abs(x[z].mean(0) - x[~z].mean(0)).max() > 1


def test_separation_is_the_smd_of_the_projections():
    x = torch.tensor([[0.0, 1.0], [0.0, 3.0], [2.0, 1.0], [4.0, 3.0]])
    focal = torch.tensor([False, False, True, True])
    edit = LayerEdit(torch.tensor([[1.0], [0.0]]), torch.tensor([[2.0, 0.0]]), torch.zeros(2))
    # projections onto (1, 0): reference 0, 0; focal 2, 4 -> SMD = (0 - 3) / sqrt((0 + 2) / 2)
    assert separation(edit, x, focal) == pytest.approx(3.0)


# -- positions and hooks --------------------------------------------------------------------------------------


def test_name_start_marks_positions_from_the_first_name_token():
    finder = NameStart([(7, 8), (9,)])
    ids = torch.tensor([[1, 2, 7, 8, 3, 9], [1, 2, 3, 4, 5, 6], [9, 1, 1, 1, 1, 1]])
    fresh = finder.positions(ids, continued=False)
    assert fresh.tolist() == [
        [False, False, True, True, True, True],
        [False] * 6,  # no name in a fresh sequence: nothing is edited
        [True] * 6,
    ]
    # a forward that continues a cached sequence without the name in it: the name came before
    assert finder.positions(ids, continued=True)[1].all()
    assert finder.positions(torch.tensor([[7, 1]]), continued=False).tolist() == [[False, False]]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_model(tiny_llama_dir, device="cpu", dtype="float32")


def random_edit(d: int, seed: int = 0) -> LayerEdit:
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=generator)
    u /= u.norm()
    return LayerEdit(3 * u[:, None], u[None, :], torch.randn(d, generator=generator))


def test_a_from_name_edit_equals_a_hand_edited_forward_and_leaves_earlier_positions_alone(tiny):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    text = "I want to buy a car from Jamal. How much?"
    row = {"text": text, "name_spans": [{"start": text.index("Jamal"), "end": text.index("Jamal") + 5}]}
    names = name_tokens(tokenizer, [row])
    ids = torch.tensor([tokenizer(chat_prompt(tokenizer, text), add_special_tokens=False)["input_ids"]])
    start = next(
        i for i in range(ids.shape[1]) if tuple(ids[0, i : i + len(next(iter(names)))].tolist()) in names
    )
    layer_edit = random_edit(adapter.d_model)
    with torch.no_grad():
        base = model(ids).logits
        embeds = model.get_input_embeddings()(ids)
        by_hand = embeds.clone()
        by_hand[:, start:] = layer_edit(embeds[:, start:])
        expected = model(inputs_embeds=by_hand).logits
        with edited(model, Edit({0: layer_edit}, "from_name"), names):
            got = model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[:, :start], base[:, :start])
    assert not torch.allclose(got[:, start:], base[:, start:], atol=1e-4)


def test_the_final_residual_edit_acts_before_the_final_norm(tiny):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    ids = torch.tensor([tokenizer("a car from Jamal", add_special_tokens=False)["input_ids"]])
    layer_edit = random_edit(adapter.d_model, 1)
    with torch.no_grad():
        before_norm = {}
        handle = model.model.norm.register_forward_pre_hook(lambda m, args: before_norm.update(x=args[0]))
        model(ids)
        handle.remove()
        expected = model.lm_head(model.model.norm(layer_edit(before_norm["x"])))
        with edited(model, Edit({adapter.n_layers: layer_edit}, "all")):
            got = model(ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_shared_prefix_batch_is_edited_like_each_prompt_alone(tiny):
    """The readouts run a batch's common leading tokens first (here they include the name): the rest, a
    continuation, must then be edited at every position."""
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    texts = ["Jamal sells a car. Offer?", "Jamal sells a chair. What would you pay?"]
    rows = [{"text": t, "name_spans": [{"start": 0, "end": 5}]} for t in texts]
    names = name_tokens(tokenizer, rows)
    chats = [chat_prompt(tokenizer, t) for t in texts]
    edit = Edit({0: random_edit(adapter.d_model, 2), 1: random_edit(adapter.d_model, 3)}, "from_name")
    with torch.no_grad(), edited(model, edit, names):
        shared = encode_shared_prefix(tokenizer, chats, "cpu")
        assert shared["prefix_ids"].shape[1] > 5  # the name sits in the shared prefix
        through_prefix = prefill(model, shared).logits[:, -1]
        alone = [model(**encode_left_padded(tokenizer, [chat], "cpu")).logits[0, -1] for chat in chats]
    torch.testing.assert_close(through_prefix, torch.stack(alone), rtol=1e-4, atol=1e-4)


def test_hooks_leave_the_model_bit_identical_even_after_an_error(tiny):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    ids = torch.tensor([tokenizer("a car from Jamal", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        before = model(ids).logits
    edit = Edit(
        {layer: random_edit(adapter.d_model, layer) for layer in range(adapter.n_layers + 1)}, "from_name"
    )
    with pytest.raises(RuntimeError, match="inside"), edited(model, edit, [(5,)]):
        model(ids)
        raise RuntimeError("inside")
    assert hook_count(model) == 0
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


# -- planted biases -----------------------------------------------------------------------------------------


def planted_model(tiny_llama_dir):
    """The tiny model with 2 x PAIRS one-token names added: Refname{k} (reference) and Focname{k} (focal)."""
    model, tokenizer = load_model(tiny_llama_dir, device="cpu", dtype="float32", attn_implementation="eager")
    names = [f"Refname{k}" for k in range(PAIRS)] + [f"Focname{k}" for k in range(PAIRS)]
    tokenizer.add_tokens(names)
    model.resize_token_embeddings(len(tokenizer))
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in names}
    return model, tokenizer, ids


def prompts():
    rows = []
    for variation, template in enumerate(TEMPLATES):
        for k in range(PAIRS):
            for name, race in ((f"Refname{k}", "White"), (f"Focname{k}", "Black")):
                text = template.format(name)
                start = text.index(name)
                rows.append(
                    {
                        "prompt_id": f"v{variation}-{name}",
                        "domain": "purchase",
                        "variation": f"v{variation}",
                        "name": name,
                        "race": race,
                        "text": text,
                        "name_spans": [{"start": start, "end": start + len(name)}],
                    }
                )
    return rows


def gap(model, tokenizer, rows, context=None) -> tuple[float, np.ndarray]:
    """(mean absolute difference of the paired names' answers, the differences) under `context`: 0 only
    when every pair is answered alike (a signed mean could cancel)."""
    settings = readout_settings(batch_size=8)
    with context if context is not None else torch.no_grad():
        values = np.array(read_answers(model, tokenizer, rows, ANSWER, settings)["value"], float)
    pairs = values[0::2] - values[1::2]
    return float(np.abs(pairs).mean()), pairs


def direction_scores(model, tokenizer, rows, tmp_path) -> pd.DataFrame:
    path = tmp_path / "residuals.parquet"
    write_cache(cache_residuals(model, tokenizer, rows, "$"), path, {})
    labels = pd.DataFrame(rows)[["prompt_id", "variation", "race"]]
    return score(
        "directions", "mean_difference", path, labels, GROUPS, parameters={"position": "name"}
    ).to_pandas()


@pytest.fixture(scope="module")
def planted_direction(tiny_llama_dir):
    """Focal names embed as their reference partner plus alpha * v: the one difference between the groups."""
    model, tokenizer, ids = planted_model(tiny_llama_dir)
    generator = torch.Generator().manual_seed(7)
    v = torch.randn(model.config.hidden_size, generator=generator)
    v /= v.norm()
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        for k in range(PAIRS):
            embeddings[ids[f"Refname{k}"]] = torch.randn(model.config.hidden_size, generator=generator) * 0.2
            embeddings[ids[f"Focname{k}"]] = embeddings[ids[f"Refname{k}"]] + 0.5 * v
    return model, tokenizer, v


@pytest.mark.parametrize("method", ["mean_difference", "leace"])
def test_each_direction_method_recovers_a_planted_direction_and_its_controls_do_not(
    planted_direction, method, tmp_path
):
    model, tokenizer, v = planted_direction
    rows = prompts()
    base_gap, _ = gap(model, tokenizer, rows)
    assert base_gap > 1e-2  # the plant makes the pairs' answers differ
    scores = direction_scores(model, tokenizer, rows, tmp_path)
    parameters = {"layers": ["all", 1], "positions": "from_name", "random_seeds": 1, "matched_seeds": 1}
    write_masks(
        tmp_path / "domain.safetensors",
        "directions",
        method,
        "domain",
        {"purchase": scores},
        parameters | {"generic": True},
        GROUPS,
    )
    manifest, masks = load_masks(tmp_path / "domain.safetensors", model)
    # the planted layer (the embeddings, residual 0) separates the groups perfectly and is chosen first
    assert manifest["conditions"]["purchase"]["counts"]["layers=1"] == {"0": 1, "1": 0, "2": 0}
    own = mask_of(Evaluation("purchase", "layers=all", PRUNED, -1, (), True), manifest, masks)
    # the edit of the planted layer removes the planted difference whole: shift(bias + v) = v
    planted = own.layers[0]
    np.testing.assert_allclose(planted.shift(planted.bias + v).numpy(), v.numpy(), atol=1e-4)
    for setting in ("layers=all", "layers=1"):
        edit = mask_of(Evaluation("purchase", setting, PRUNED, -1, (), True), manifest, masks)
        closed, pairs = gap(model, tokenizer, rows, edited(model, edit, name_tokens(tokenizer, rows)))
        # float32 rounding only: the pairs' answers (tens of dollars) agree to 1e-4
        assert closed < 1e-3 * base_gap, (setting, closed, base_gap)
        np.testing.assert_allclose(pairs, 0, atol=1e-4)
    for control, seed in ((RANDOM, 0), (MATCHED, 0), (GENERIC, -1)):
        drawn = mask_of(Evaluation("purchase", "layers=1", control, seed, (), True), manifest, masks)
        left, _ = gap(model, tokenizer, rows, edited(model, drawn, name_tokens(tokenizer, rows)))
        assert left > 0.05 * base_gap, (control, left, base_gap)  # the edit leaves < 0.1%


def test_the_planted_direction_is_the_groups_mean_difference(planted_direction, tmp_path):
    model, tokenizer, v = planted_direction
    rows = prompts()
    scores = direction_scores(model, tokenizer, rows, tmp_path)
    residual = scores[(scores["statistic"] == "residual") & (scores["layer"] == 0)]
    x = torch.tensor(np.stack(residual["values"].to_list()))
    edit = mean_difference(x, torch.tensor((residual["group"] == "Black").to_numpy()))
    assert float(edit.right[0] @ v) == pytest.approx(-1.0, abs=1e-5)  # White minus Black = -0.5 v


@pytest.fixture(scope="module")
def planted_neuron(tiny_llama_dir):
    """The groups differ only in residual coordinate m, which nothing reads but MLP unit j of layer 0 (and
    nothing writes): unit j alone carries the difference into the model."""
    model, tokenizer, ids = planted_model(tiny_llama_dir)
    adapter = ModelAdapter.of(model)
    m, j = 0, 5
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        embeddings[:, m] = 0
        for k in range(PAIRS):
            shared = torch.randn(model.config.hidden_size, generator=generator) * 0.05
            shared[m] = 0
            embeddings[ids[f"Refname{k}"]] = shared
            embeddings[ids[f"Focname{k}"]] = shared
            embeddings[ids[f"Refname{k}"], m] = 0.05
            embeddings[ids[f"Focname{k}"], m] = -0.05
        for layer in range(adapter.n_layers):
            for name in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"):
                adapter.linear(layer, name).weight[:, m] = 0
            for name in ("o_proj", "down_proj"):
                adapter.linear(layer, name).weight[m, :] = 0
        model.lm_head.weight[:, m] = 0
        gate, up = adapter.linear(0, "gate_proj").weight, adapter.linear(0, "up_proj").weight
        gate[j], up[j] = 0, 0
        gate[j, m], up[j, m] = 20.0, 20.0
        adapter.linear(0, "down_proj").weight[:, j] = torch.randn(
            model.config.hidden_size, generator=generator
        )
        adapter.linear(0, "down_proj").weight[m, j] = 0
    return model, tokenizer, j


def test_the_neuron_method_recovers_a_planted_unit_whose_removal_closes_the_gap(planted_neuron, tmp_path):
    model, tokenizer, j = planted_neuron
    adapter = ModelAdapter.of(model)
    rows = prompts()
    base_gap, _ = gap(model, tokenizer, rows)
    assert base_gap > 1e-2
    answers = [{"prompt_id": r["prompt_id"], "sample": 0, "text": "", "grid_probs": None} for r in rows]
    path = tmp_path / "cache.parquet"
    write_cache(cache_activations(model, tokenizer, rows, answers, ANSWER, attribution=False), path, {})
    labels = pd.DataFrame(rows)[["prompt_id", "variation", "race"]]
    table = score("neurons", "activation", path, labels, GROUPS, parameters={"position": "name"}).to_pandas()
    diff = table[(table["statistic"] == "diff") & (table["layer"] == 0)]["values"]
    assert all(int(np.argmax(np.abs(vector))) == j for vector in diff)  # every variation ranks unit j first
    unit = torch.zeros(adapter.d_mlp, dtype=torch.bool)
    unit[j] = True
    none = torch.zeros(adapter.d_mlp, dtype=torch.bool)
    closed, pairs = gap(
        model, tokenizer, rows, masked(model, Mask("neurons", {"0": unit, "1": none}), "hooks")
    )
    assert closed < 1e-3 * base_gap and np.abs(pairs).max() < 1e-4
    other = torch.zeros(adapter.d_mlp, dtype=torch.bool)
    other[(j + 7) % adapter.d_mlp] = True  # a unit that carries nothing of the plant
    left, _ = gap(model, tokenizer, rows, masked(model, Mask("neurons", {"0": other, "1": none}), "hooks"))
    assert left > 0.2 * base_gap


def test_the_residual_cache_holds_every_layer_at_the_last_name_token_and_the_answer_position(tiny, tmp_path):
    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    text = "I want to buy a car from Jamal. Offer?"
    start = text.index("Jamal")
    row = {"prompt_id": "p", "text": text, "name_spans": [{"start": start, "end": start + 5}]}
    path = tmp_path / "residuals.parquet"
    write_cache(
        cache_residuals(
            model,
            tokenizer,
            [
                row,
                row
                | {
                    "prompt_id": "q",
                    "text": "Hi " + text,
                    "name_spans": [{"start": start + 3, "end": start + 8}],
                },
            ],
            "$",
        ),
        path,
        {},
    )
    table = pq.read_table(path).to_pandas()
    assert pq.read_schema(path).remove_metadata().equals(CACHE_SCHEMA)
    assert sorted(set(table["layer"])) == list(range(adapter.n_layers + 1))
    ids = tokenizer(chat_prompt(tokenizer, text, "$"), add_special_tokens=False)["input_ids"]
    names = name_tokens(tokenizer, [row])
    (tokens,) = names
    last_name = (
        next(i for i in range(len(ids)) if tuple(ids[i : i + len(tokens)]) == tokens) + len(tokens) - 1
    )
    with torch.no_grad():
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    mine = table[table["prompt_id"] == "p"].set_index(["layer", "reduction"])["values"]
    for layer in range(adapter.n_layers):  # hidden_states[l] is the input of block l
        np.testing.assert_allclose(
            mine[layer, "last_name"], hidden[layer][0, last_name].numpy(), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(mine[layer, "answer"], hidden[layer][0, -1].numpy(), rtol=1e-5, atol=1e-6)


def test_groups_with_the_same_mean_give_an_edit_that_moves_nothing():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [3.0, 2.0], [1.0, 4.0]])
    edit = mean_difference(x, torch.tensor([False, False, True, True]))
    assert torch.equal(edit(x), x)


def test_damage_edits_name_free_text_from_the_start_of_the_users_message(tiny, tmp_path):
    """On the neutral prompts a from_name edit acts from the message's first token (as if it began with a
    name), never on the system turn: the damage equals the KL of a forward edited there by hand."""
    from biasprune.damage import damage_table, mean_kl

    model, tokenizer = tiny
    adapter = ModelAdapter.of(model)
    rng = np.random.default_rng(3)
    rows = []
    for layer in range(adapter.n_layers + 1):  # only residual layer 0 separates the groups
        for i, group in enumerate(["White"] * 4 + ["Black"] * 4):
            vector = rng.normal(size=adapter.d_model) * (0.01 if layer == 0 else 1)
            vector[0] += 5.0 if group == "Black" and layer == 0 else 0
            rows.append(("v", layer, f"p{i}", group, "residual", vector.astype(np.float32)))
    scores = pd.DataFrame(rows, columns=["variation", "layer", "target", "group", "statistic", "values"])
    parameters = {"layers": [1], "positions": "from_name", "random_seeds": 0}
    write_masks(
        tmp_path / "domain.safetensors",
        "directions",
        "mean_difference",
        "domain",
        {"d": scores},
        parameters,
        GROUPS,
    )
    manifest, masks = load_masks(tmp_path / "domain.safetensors", model)
    text = "Describe the weather in Paris in two sentences."
    (kl,) = damage_table(model, tokenizer, manifest, masks, [text]).column("kl").to_pylist()
    edit = mask_of(Evaluation("d", "layers=1", PRUNED, -1, (), True), manifest, masks).layers[0]
    chat = chat_prompt(tokenizer, text)
    ids = torch.tensor([tokenizer(chat, add_special_tokens=False)["input_ids"]])
    start = len(tokenizer(chat[: chat.rindex(text)], add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        base = model(ids).logits.float().log_softmax(-1)[0]
        embeds = model.get_input_embeddings()(ids)
        embeds[:, start:] = edit(embeds[:, start:])
        by_hand = model(inputs_embeds=embeds).logits.float().log_softmax(-1)[0]
    assert kl == pytest.approx(mean_kl([base], [by_hand]), rel=1e-4)
    assert kl > 0 and torch.equal(by_hand[:start], base[:start])
