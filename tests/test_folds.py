"""Cross-fitting over names: the seeded split, masks made per fold, and the config check."""

import csv
import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT

from biasprune.bits import TensorWriter
from biasprune.errors import ConfigError
from biasprune.folds import assign_folds, fold_key
from biasprune.jobs import Jobs
from biasprune.maskfile import load_masks
from biasprune.masks import build_fold_masks
from biasprune.study import load_study

GROUPS = ("White", "Black")


def names_table():
    with open(ROOT / "resources/prompts/names.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_folds_partition_each_race_and_gender_evenly_and_follow_their_seed():
    rows = names_table()
    folds = assign_folds(rows, GROUPS, 2, seed=0)
    assert set(folds) == {"A", "B"}
    assert sorted(folds["A"] + folds["B"]) == sorted(row["name"] for row in rows)  # a partition
    for race in GROUPS:
        for gender in ("female", "male"):
            cell = {row["name"] for row in rows if (row["race"], row["gender"]) == (race, gender)}
            assert len(cell & set(folds["A"])) == len(cell & set(folds["B"])) == len(cell) // 2
    assert assign_folds(rows, GROUPS, 2, seed=0) == folds  # the same seed, the same split
    splits = {tuple(assign_folds(rows, GROUPS, 2, seed=seed)["A"]) for seed in range(5)}
    assert len(splits) == 5  # C(8,4)^4 possible splits: five seeds give five
    assert assign_folds(rows, GROUPS, 1, seed=0) == {}  # one fold: the same names select and evaluate
    three = assign_folds(rows, GROUPS, 3, seed=0)
    for race in GROUPS:  # 32 names of a race over three folds: 11, 11, 10
        group = {row["name"] for row in rows if row["race"] == race}
        assert sorted(len(group & set(three[label])) for label in "ABC") == [10, 11, 11]


def test_one_name_per_race_and_gender_deals_the_genders_to_different_folds():
    rows = [
        {"name": "Emily", "race": "White", "gender": "female"},
        {"name": "Todd", "race": "White", "gender": "male"},
        {"name": "Ebony", "race": "Black", "gender": "female"},
        {"name": "Jamal", "race": "Black", "gender": "male"},
    ]
    assert assign_folds(rows, GROUPS, 2, seed=3) == {"A": ["Ebony", "Emily"], "B": ["Jamal", "Todd"]}


def head_scores(rng, variations=("chair", "car")):
    """A heads/name_attention score table with a different `sum` per fold (2 layers x 4 heads)."""
    rows = []
    for fold in ("", "A", "B"):
        for variation in variations:
            for layer in range(2):
                rows.append(
                    {
                        "variation": variation,
                        "layer": layer,
                        "target": "attn.hook_pattern",
                        "group": "",
                        "statistic": "sum",
                        "values": rng.random(4).astype(np.float32),
                        "fold": fold,
                    }
                )
    return pd.DataFrame(rows)


def top_heads(table, fold, variations, count):
    """The `count` heads with the largest summed score over `variations`, by numpy."""
    part = table[(table["fold"] == fold) & table["variation"].isin(variations)]
    summed = np.stack([np.sum([r for r in part[part["layer"] == layer]["values"]], 0) for layer in range(2)])
    chosen = np.argsort(-summed.ravel(), kind="stable")[:count]
    return {(int(i) // 4, int(i) % 4) for i in chosen}


def test_each_fold_selects_its_masks_on_its_own_scores_beside_the_all_names_mask(tmp_path):
    table = head_scores(np.random.default_rng(0))
    folds = {"A": ["Ebony", "Emily"], "B": ["Jamal", "Todd"]}
    parameters = {"share": [0.25], "random_seeds": 1, "common": "intersection"}
    path = tmp_path / "domain.safetensors"
    with TensorWriter(tmp_path) as writer:
        manifest = build_fold_masks(
            "heads", "name_attention", "variation", {"purchase": table}, parameters, GROUPS, writer, folds
        )
        writer.save(path)
    path.with_suffix(".json").write_text(json.dumps(manifest))
    manifest, masks = load_masks(path)
    assert {fold: entry["names"] for fold, entry in manifest["folds"].items()} == folds
    for fold in ("", "A", "B"):
        mask = masks[fold_key("purchase/chair", fold), "share=0.25"]
        chosen = {(int(layer), int(head)) for layer in mask for head in torch.nonzero(mask[layer]).ravel()}
        assert chosen == top_heads(table, fold, ["chair"], 2), fold
    different = [
        masks[fold_key("purchase/car", a), "share=0.25"]["0"].tolist()
        != masks[fold_key("purchase/car", b), "share=0.25"]["0"].tolist()
        for a, b in combinations(("", "A", "B"), 2)
    ]
    assert any(different)  # the folds' scores differ, so do some of their masks


def test_more_folds_than_a_group_has_names_is_refused_before_any_job(tmp_path):
    config = yaml.safe_load((ROOT / "config/test-config.yaml").read_text())
    config["names"]["folds"] = 5
    with pytest.raises(ConfigError, match=r"names\.folds: expected at most 4 .* got 5"):
        load_study(config, "config/test-config.yaml", ROOT)
    config["names"]["folds"] = 2
    folds = Jobs(load_study(config, "config/test-config.yaml", ROOT)).folds()
    white = {"Emily", "Sarah", "Todd", "Ryan"}
    assert [len(set(names) & white) for names in folds.values()] == [2, 2]  # two White names per fold
