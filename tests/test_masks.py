"""Mask construction: scopes, selection sizes, attribution signs, storage and shape checks."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_masks
from safetensors.torch import load_file, save_file

from biasprune.bits import decode, encode, stored_count
from biasprune.errors import ConfigError
from biasprune.maskfile import load_masks
from biasprune.masks import (
    Candidate,
    combine,
    select_units,
)
from biasprune.vocabulary import scope_selections, settings

GROUPS = ("White", "Black")


def m(*bits):
    return {"0": torch.tensor(bits, dtype=torch.bool)}


PER_VARIATION = {
    "car": {"a": m(1, 1, 0, 0), "b": m(1, 0, 1, 0), "c": m(1, 1, 1, 0)},
    "job": {"x": m(1, 1, 0, 1), "y": m(1, 1, 1, 1)},
}


def scope_conditions(scope, rule="intersection"):
    """{condition: (selection, mask)} of the hand-made variation masks (each its own ranking)."""
    selections = scope_selections(scope, {d: list(v) for d, v in PER_VARIATION.items()})
    return {
        name: (
            selection,
            combine(
                [
                    Candidate(PER_VARIATION[d][v], PER_VARIATION[d][v])
                    for d, vs in selection.items()
                    for v in vs
                ],
                rule,
            )[0],
        )
        for name, selection in selections.items()
    }


def test_scopes_by_hand():
    loo = scope_conditions("loo")
    assert loo["car/-a"][0] == {"car": ["b", "c"]} and loo["car/-a"][1]["0"].tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert loo["job/-x"][1]["0"].tolist() == [True, True, True, True]
    domain = scope_conditions("domain")
    assert domain["car"][1]["0"].tolist() == [True, False, False, False]
    assert domain["job"][1]["0"].tolist() == [True, True, False, True]
    cross = scope_conditions("cross")
    assert cross["-car"][0] == {"job": ["x", "y"]} and torch.equal(
        cross["-car"][1]["0"], domain["job"][1]["0"]
    )
    assert set(scope_conditions("variation")) == {"car/a", "car/b", "car/c", "job/x", "job/y"}
    # Majority: selected in at least half of the variations (car: a, b, c -> entries 0, 1, 2).
    assert scope_conditions("domain", "majority")["car"][1]["0"].tolist() == [True, True, True, False]
    assert scope_conditions("cross", "majority")["-job"][1]["0"].tolist() == [True, True, True, False]


def test_frequency_rule_takes_the_k_most_frequent_heads_ties_by_summed_score():
    # Five variations' top-2 lists over 5 heads: head 0 in four, heads 1 and 3 in two, heads 2 and 4 in one.
    lists = [m(1, 1, 0, 0, 0), m(1, 0, 0, 1, 0), m(1, 1, 0, 0, 0), m(1, 0, 0, 1, 0), m(0, 0, 1, 0, 1)]
    for first, second in ((0.1, 0.5), (0.5, 0.1)):  # which of the tied heads 1 and 3 scores higher
        ranking = {"0": torch.tensor([0.0, first, 0.0, second, 0.0])}
        candidates = [Candidate(mask, ranking) for mask in lists]
        mask, pool, generic = combine(candidates, "frequency")
        winner = 1 if first > second else 3
        assert mask["0"].nonzero().flatten().tolist() == sorted([0, winner])
        assert generic is None
        # Matched pool: the 2K = 4 heads ranked just below the mask by the summed score (all the others).
        assert pool["0"].tolist() == [not x for x in mask["0"].tolist()]
    # The intersection of the same lists is empty (no head is in all five): why frequency is the default.
    assert not combine(candidates, "intersection")[0]["0"].any()


def test_a_mask_is_stored_as_indices_when_they_are_smaller_than_packed_bits():
    generator = torch.Generator().manual_seed(0)
    # 64 x 50 = 3,200 entries: packed bits take 400 bytes, so up to 99 int32 indices (396 bytes) are smaller.
    for count, kind in [
        (0, torch.int32),
        (1, torch.int32),
        (99, torch.int32),
        (100, torch.uint8),
        (1600, torch.uint8),
    ]:
        mask = torch.zeros(3200, dtype=torch.bool)
        mask[torch.randperm(3200, generator=generator)[:count]] = True
        mask = mask.view(64, 50)
        stored = encode(mask)
        assert stored.dtype == kind
        if kind == torch.int32:  # the sorted flat positions, by hand
            assert stored.tolist() == [i for i, x in enumerate(mask.flatten().tolist()) if x]
        else:  # numpy's bit order: the first entry is the high bit of the first byte
            assert stored.tolist() == np.packbits(mask.numpy().ravel()).tolist()
        assert torch.equal(decode(stored, (64, 50)), mask)
        assert stored_count(stored) == count  # counted without decoding (a popcount of the bytes)
    assert torch.equal(decode(encode(torch.tensor([True] * 7)), (7,)), torch.ones(7, dtype=torch.bool))


def scores_table(rows):
    return pd.DataFrame(rows, columns=["variation", "layer", "target", "group", "statistic", "values"])


def test_neuron_masks_take_the_configured_share_and_attribution_points_against_the_bias(tmp_path):
    rng = np.random.default_rng(0)
    effects = {
        ("v1", 0): rng.normal(size=50),
        ("v1", 1): rng.normal(size=50),
        ("v2", 0): rng.normal(size=50),
        ("v2", 1): rng.normal(size=50),
    }
    table = scores_table(
        [(v, layer, "mlp.hook_post", "", "smd_effect", x) for (v, layer), x in effects.items()]
    )
    baseline = pd.DataFrame(
        {"domain": ["d", "d"], "variation": ["v1", "v2"], "level": "variation", "smd": [0.5, -0.4]}
    )
    path = tmp_path / "neurons.safetensors"
    manifest = write_masks(
        path,
        "neurons",
        "attribution",
        "variation",
        {"d": table},
        {"fraction": [0.05], "random_seeds": 2},
        GROUPS,
        baseline,
    )
    tensors = load_file(path)
    assert sum(manifest["conditions"]["d/v1"]["counts"]["fraction=0.05"].values()) == 5  # 5% of 100 units
    assert manifest["random_seeds"] == [0, 1]
    chosen = torch.cat([decode(tensors[f"d/v1|fraction=0.05|{k}"], (50,)) for k in ("0", "1")])
    # SMD of v1 is positive: the units whose zeroing lowers it most (most negative effect) are chosen.
    scores = np.concatenate([effects["v1", 0], effects["v1", 1]])
    assert set(np.nonzero(chosen.numpy())[0]) == set(np.argsort(scores)[:5])
    chosen = torch.cat([decode(tensors[f"d/v2|fraction=0.05|{k}"], (50,)) for k in ("0", "1")])
    scores = np.concatenate([effects["v2", 0], effects["v2", 1]])
    assert set(np.nonzero(chosen.numpy())[0]) == set(np.argsort(-scores)[:5])  # negative SMD: the opposite


def test_a_mask_file_for_another_model_is_refused(tmp_path, tiny_llama_dir):
    from biasprune.models import load_model

    model, _ = load_model(tiny_llama_dir, device="cpu")
    mask = {"0": torch.tensor([True] + [False] * 99)}
    save_file({f"d/v|share=0.1|{k}": encode(v) for k, v in mask.items()}, tmp_path / "heads.safetensors")
    manifest = {"unit": "heads", "shapes": {"0": [100]}}
    (tmp_path / "heads.json").write_text(json.dumps(manifest))
    with pytest.raises(
        ConfigError, match=r"heads.json: shapes.0: expected the model's shape \[4\], got \[100\]"
    ):
        load_masks(tmp_path / "heads.safetensors", model)
    manifest["shapes"]["0"] = [4]
    save_file(
        {"d/v|share=0.1|0": encode(torch.tensor([True, False, False, True]))},
        tmp_path / "heads.safetensors",
    )
    (tmp_path / "heads.json").write_text(json.dumps(manifest))
    _, masks = load_masks(tmp_path / "heads.safetensors", model)
    assert masks["d/v", "share=0.1"]["0"].tolist() == [True, False, False, True]


def test_export_of_an_unknown_condition_names_what_exists(tmp_path, tiny_llama_dir):
    from biasprune.export import export_pruned

    save_file(
        {"car|share=0.5|0": encode(torch.tensor([True, False, False, False]))},
        tmp_path / "heads.safetensors",
    )
    (tmp_path / "heads.json").write_text(
        json.dumps({"unit": "heads", "method": "m", "scope": "domain", "shapes": {"0": [4]}})
    )
    with pytest.raises(
        ConfigError,
        match=r"export.condition/setting: expected one of \['car \[share=0.5\]'\], got 'bus \[share=0.5\]'",
    ):
        export_pruned(tiny_llama_dir, tmp_path / "heads.safetensors", "bus", "share=0.5", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_weight_masks_are_the_papers_set_difference_per_matrix_at_every_scope(tmp_path, tiny_llama_dir):
    from biasprune.models import LINEAR_INPUTS, LINEARS, ModelAdapter, load_model
    from biasprune.selection import intersect, score_matched, wanda_set_difference

    model, _ = load_model(tiny_llama_dir, device="cpu")
    adapter = ModelAdapter.of(model)
    rng = np.random.default_rng(0)
    width = {"ln1.hook_normalized": 32, "attn.hook_z": 32, "ln2.hook_normalized": 32, "mlp.hook_post": 48}
    rows = [
        (v, layer, site, group, "norm", rng.random(n).astype(np.float32))
        for v in ("a", "b")
        for layer in range(2)
        for site, n in width.items()
        for group in GROUPS
    ]
    table = scores_table(rows)
    # the second pair gives masks sparse enough to be stored as indices (the first: packed bits)
    parameters = {
        "tau": [[0.3, 0.2], [0.04, 0.3]],
        "select": ["focal"],
        "random_seeds": 1,
        "matched_seeds": 1,
    }
    path = tmp_path / "weights.safetensors"
    manifest = write_masks(path, "weights", "wanda", "domain", {"d": table}, parameters, GROUPS, model=model)
    tensors = load_file(path)
    norm = {(v, layer, site, group): torch.tensor(x) for v, layer, site, group, _, x in rows}
    total = {"bits": 0, "indices": 0}
    for tau_select, tau_protect in parameters["tau"]:
        setting = f"tau={tau_select},{tau_protect};select=focal"
        stored = {"bits": 0, "indices": 0}
        for layer in range(2):
            for linear in LINEARS:
                key, site = f"{layer}.{linear}", LINEAR_INPUTS[linear]
                weight = adapter.linear(layer, linear).weight.detach()
                per_variation = [
                    {
                        key: wanda_set_difference(
                            weight,
                            norm[v, layer, site, "Black"],
                            norm[v, layer, site, "White"],
                            tau_select,
                            tau_protect,
                        )
                    }
                    for v in ("a", "b")
                ]
                expected = intersect(per_variation)[key]
                assert torch.equal(decode(tensors[f"d|{setting}|{key}"], weight.shape), expected), key
                for part in (
                    "",
                    "|pool",
                    "|generic",
                ):  # indices where 4 bytes each are fewer than packed bits
                    stored_part = tensors[f"d|{setting}|{key}{part}"]
                    sparse = 4 * int(decode(stored_part, weight.shape).sum()) < weight.numel() / 8
                    stored["indices" if sparse else "bits"] += 1
                    assert stored_part.dtype == (torch.int32 if sparse else torch.uint8)
                assert manifest["conditions"]["d"]["counts"][setting][key] == int(expected.sum())
                # Matched pool: the score-matched pool (test_selection.py tests its profile) of the stored
                # mask by the selected group's Wanda score summed over both variations, seeded by the key.
                magnitude = weight.abs().numpy()
                select = magnitude * sum(norm[v, layer, site, "Black"].numpy() for v in ("a", "b"))[None, :]
                pool = decode(tensors[f"d|{setting}|{key}|pool"], weight.shape)
                assert torch.equal(pool, score_matched(expected, torch.from_numpy(select), key))
                assert not (pool & expected).any() and int(pool.sum()) >= int(expected.sum())
                # Generic: as many entries as the mask, the largest pooled (group-blind) Wanda scores.
                blind = sum(
                    magnitude
                    * np.sqrt(
                        norm[v, layer, site, "Black"].numpy() ** 2
                        + norm[v, layer, site, "White"].numpy() ** 2
                    )[None, :]
                    for v in ("a", "b")
                ).ravel()
                generic = decode(tensors[f"d|{setting}|{key}|generic"], weight.shape).numpy().ravel()
                count = int(expected.sum())
                assert generic.sum() == count
                if count:
                    assert blind[generic].min() >= np.sort(blind)[-count] - 1e-6
        assert manifest["conditions"]["d"]["stored"][setting] == stored
        total = {kind: total[kind] + stored[kind] for kind in total}
    assert manifest["conditions"]["d"]["selection"] == {"d": ["a", "b"]}
    assert manifest["stored"] == total and total["bits"] and total["indices"]  # the choice is per tensor
    _, masks = load_masks(path, model)  # read back lazily: one key decoded at a time, counted undecoded
    for setting, counts in manifest["conditions"]["d"]["counts"].items():
        lazy = masks["d", setting]
        assert lazy.total() == sum(counts.values()) == sum(int(v.sum()) for v in lazy.values())
        assert sorted(lazy) == sorted(counts)


def test_top_k_heads_and_a_k_larger_than_the_model_has():
    ranking = {"0": torch.tensor([0.1, 0.9, 0.3]), "1": torch.tensor([0.8, 0.2, 0.7])}
    chosen = select_units(ranking, "heads", "k=3")
    assert chosen["0"].tolist() == [False, True, False] and chosen["1"].tolist() == [True, False, True]
    assert settings("heads", {"share": [0.039], "k": [40]}) == ["share=0.039", "k=40"]
    with pytest.raises(
        ConfigError, match=r"^config: masks.heads.k: expected at most 6 \(the model's query heads\), got 7$"
    ):
        select_units(ranking, "heads", "k=7")
