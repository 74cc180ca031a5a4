"""Condition metrics: reductions against the unpruned answers (paired by name), damage, random controls."""

import numpy as np
import pandas as pd
import pytest

from biasprune.conditions import condition_tables
from biasprune.metrics import bias_table, comparison_table
from biasprune.weighting import inlier_ratio

GROUPS = ("White", "Black")
METRICS = {"bootstrap": 300, "confidence": 0.95, "seed": 0}
NAMES = {"White": ["Emily", "Todd", "Sarah", "Ryan"], "Black": ["Jamal", "Ebony", "Lakisha", "Tyrone"]}


def answers(shift: float, seed: int = 0, domain="purchase", variations=("chair", "car")) -> pd.DataFrame:
    """Three answers per name and variation; White names answer `shift` higher on average."""
    rng = np.random.default_rng(seed)
    rows = []
    for variation in variations:
        for race, names in NAMES.items():
            for name in names:
                for sample in range(3):
                    value = 100 + rng.normal(0, 5) + (shift if race == "White" else 0)
                    rows.append(
                        {
                            "prompt_id": f"{domain}-{variation}-{name}",
                            "sample": sample,
                            "domain": domain,
                            "variation": variation,
                            "name": name,
                            "race": race,
                            "value": value,
                            "valid": True,
                            "reason": "ok",
                        }
                    )
    return pd.DataFrame(rows)


def hand_smd(frame):
    white = frame.loc[frame["race"] == "White", "value"].to_numpy()
    black = frame.loc[frame["race"] == "Black", "value"].to_numpy()
    sd = np.sqrt(((white - white.mean()) ** 2).sum() + ((black - black.mean()) ** 2).sum()) / np.sqrt(
        len(white) + len(black) - 2
    )
    return (white.mean() - black.mean()) / sd


def test_reduction_by_hand_and_the_unpruned_side_equals_the_baseline_table():
    base, pruned = answers(8.0), answers(2.0, seed=1)
    table = comparison_table(pruned, base, GROUPS, **{"resamples": 300, "confidence": 0.95, "seed": 0})
    rows = table[table["level"] == "variation"].set_index("variation")
    baseline = bias_table(base, GROUPS, 300, 0.95, 0).set_index("variation")
    for variation in ("chair", "car"):
        part, base_part = pruned[pruned["variation"] == variation], base[base["variation"] == variation]
        assert rows.loc[variation, "smd"] == pytest.approx(hand_smd(part))
        assert rows.loc[variation, "base_smd"] == pytest.approx(baseline.loc[variation, "smd"])
        assert rows.loc[variation, "reduction"] == pytest.approx(
            1 - abs(hand_smd(part)) / abs(hand_smd(base_part))
        )
        assert rows.loc[variation, "smd_low"] < rows.loc[variation, "smd"] < rows.loc[variation, "smd_high"]
    domain = table[table["level"] == "domain"].iloc[0]
    mean_abs = np.mean([abs(hand_smd(pruned[pruned["variation"] == v])) for v in ("chair", "car")])
    base_abs = np.mean([abs(hand_smd(base[base["variation"] == v])) for v in ("chair", "car")])
    assert domain["reduction"] == pytest.approx(1 - mean_abs / base_abs)
    assert domain["reduction_low"] < domain["reduction"] < domain["reduction_high"]


def test_reduction_interval_is_paired_by_name():
    """Pruned answers that are an affine map of the unpruned ones keep every resample's SMD: a paired
    interval is exactly [0, 0]; resampling the two sides independently would not be."""
    base = answers(8.0)
    pruned = base.assign(value=base["value"] * 2 + 3)
    table = comparison_table(pruned, base, GROUPS, 300, 0.95, 0)
    assert np.allclose(table[["reduction", "reduction_low", "reduction_high"]].to_numpy(float), 0, atol=1e-9)
    assert (table["inlier_ratio"] < 0.1).all()  # every answer moved out of the unpruned band


def test_inlier_ratio_against_numpy_percentiles():
    base = np.arange(100.0)
    pruned = np.array([-1.0, 4.0, 4.95, 50.0, 94.05, 94.1, 200.0])
    low, high = np.percentile(base, [5, 95])
    assert inlier_ratio(pruned, base) == pytest.approx(np.mean((pruned >= low) & (pruned <= high)))
    assert inlier_ratio(pruned, base) == pytest.approx(3 / 7)


def evaluated(condition, control, seed, frame, scope="domain", n_pruned=3, in_sample=True, fold=""):
    return frame.assign(
        fold=fold,
        unit="heads",
        method="attribution",
        scope=scope,
        condition=condition,
        setting="share=0.1",
        control=control,
        seed=seed,
        in_sample=in_sample,
        n_pruned=n_pruned,
    )


def test_condition_tables_summarise_random_controls_and_build_the_transfer_matrix():
    base = answers(8.0)
    frames = [
        evaluated("purchase", "pruned", -1, answers(1.0, seed=1)),
        evaluated("purchase", "random", 0, answers(7.0, seed=2)),
        evaluated("purchase", "random", 1, answers(9.0, seed=3)),
    ]
    evaluation = pd.concat(frames, ignore_index=True)
    damage = pd.DataFrame(
        [
            {"unit": "heads", "method": "attribution", "scope": "domain", "condition": "purchase"}
            | {"setting": "share=0.1", "control": c, "seed": s, "kl": kl}
            for c, s, kl in (("pruned", -1, 0.5), ("random", 0, 0.1), ("random", 1, 0.3))
        ]
    )
    manifest = {"unit": "heads", "method": "attribution", "scope": "domain", "shapes": {"0": [4], "1": [6]}}
    conditions, transfer, names = condition_tables([evaluation], damage, [manifest], base, GROUPS, METRICS)
    rows = conditions[conditions["level"] == "domain"].set_index(["control", "seed"])
    randoms = rows.loc["random"]
    mine = rows.loc[("pruned", -1)]
    assert mine["random_abs_smd_mean"] == pytest.approx(randoms["abs_smd"].mean())
    assert mine["random_abs_smd_std"] == pytest.approx(np.std(randoms["abs_smd"], ddof=1))
    assert mine["random_kl_mean"] == pytest.approx(0.2) and mine["kl"] == 0.5
    assert mine["share_pruned"] == pytest.approx(3 / 10) and not mine["vacuous"]
    assert mine["reduction"] > mine["random_reduction_mean"]  # the gap mostly closed, the controls' not
    assert (mine["n_random"], mine["n_matched"], mine["n_generic"]) == (2, 0, 0)
    assert np.isnan(mine["matched_reduction_mean"])  # no matched control run: empty, not 0
    (cell,) = transfer.to_dict("records")
    assert (cell["selection"], cell["evaluated"], cell["in_sample"]) == ("purchase", "purchase", True)
    assert cell["reduction"] == pytest.approx(mine["reduction"])
    # Per-name summaries, by hand: Emily's valid answers on chair under the mask, and under no mask.
    pruned = frames[0]
    emily = pruned[(pruned["name"] == "Emily") & (pruned["variation"] == "chair")]["value"]
    row = names[(names["control"] == "pruned") & (names["name"] == "Emily") & (names["variation"] == "chair")]
    assert row[["n_valid", "total", "total_sq"]].iloc[0].tolist() == pytest.approx(
        [3, emily.sum(), (emily**2).sum()]
    )
    chair = base[base["variation"] == "chair"]["value"]
    low, high = np.percentile(chair, [5, 95])
    own = names[(names["control"] == "base") & (names["variation"] == "chair")]
    assert own["n_inlier"].sum() == ((chair >= low) & (chair <= high)).sum()
    inside = ((emily >= low) & (emily <= high)).sum()
    assert row["n_inlier"].iloc[0] == inside


def test_a_mask_that_prunes_nothing_is_empty_not_zero():
    base = answers(8.0)
    evaluation = evaluated("purchase", "pruned", -1, base.copy()).assign(n_pruned=0)
    damage = pd.DataFrame(
        [
            {"unit": "heads", "method": "attribution", "scope": "domain", "condition": "purchase"}
            | {"setting": "share=0.1", "control": "pruned", "seed": -1, "kl": 0.0}
        ]
    )
    manifest = {"unit": "heads", "method": "attribution", "scope": "domain", "shapes": {"0": [4], "1": [6]}}
    conditions, transfer, _ = condition_tables([evaluation], damage, [manifest], base, GROUPS, METRICS)
    assert conditions["vacuous"].all()
    assert conditions[["reduction", "abs_smd", "kl", "inlier_ratio"]].isna().all().all()
    assert transfer["reduction"].isna().all() and transfer["vacuous"].all()


def test_cross_fitted_folds_pool_into_one_condition_over_every_name():
    """Fold A's mask read on fold A's names (selected on B's) and B's on B's: one condition whose SMD is over
    all names (by hand), n_pruned the folds' mean, `name_folds` 2, each name's row with the fold it is in."""
    base, pruned = answers(8.0), answers(3.0, seed=1)
    fold_a = {"Emily", "Todd", "Jamal", "Ebony"}
    on_b = ~pruned["name"].isin(fold_a)
    evaluation = pd.concat(
        [
            evaluated("purchase", "pruned", -1, pruned[~on_b], n_pruned=2, fold="A"),
            evaluated("purchase", "pruned", -1, pruned[on_b], n_pruned=6, fold="B"),
        ],
        ignore_index=True,
    )
    damage = pd.DataFrame(
        [
            {"unit": "heads", "method": "attribution", "scope": "domain", "condition": "purchase"}
            | {"setting": "share=0.1", "control": "pruned", "seed": -1, "kl": 0.2}
        ]
    )
    manifest = {"unit": "heads", "method": "attribution", "scope": "domain", "shapes": {"0": [4], "1": [6]}}
    conditions, transfer, names = condition_tables([evaluation], damage, [manifest], base, GROUPS, METRICS)
    rows = conditions.set_index("variation")
    assert len(rows) == 3  # chair, car and the domain: one condition, not one per fold
    assert rows.loc["chair", "smd"] == pytest.approx(hand_smd(pruned[pruned["variation"] == "chair"]))
    assert (rows["n_pruned"] == 4).all() and (rows["name_folds"] == 2).all()
    assert (transfer["name_folds"] == 2).all()
    selected = names[names["control"] == "pruned"].drop_duplicates("name").set_index("name")["fold"]
    assert selected.to_dict() == {name: "A" if name in fold_a else "B" for name in selected.index}
    assert (names.loc[names["control"] == "base", "fold"] == "").all()
