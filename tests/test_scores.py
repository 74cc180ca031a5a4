"""Score aggregation from a hand-built cache, against numpy."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from biasprune.activations import CACHE_SCHEMA
from biasprune.scores import score
from biasprune.vocabulary import WANDA_SITES

GROUPS = ("White", "Black")
RNG = np.random.default_rng(0)
LABELS = pd.DataFrame(
    {
        "prompt_id": [f"p{i}" for i in range(8)],
        "variation": ["car"] * 4 + ["chair"] * 4,
        "race": ["White", "White", "Black", "Black"] * 2,
    }
)
VECTORS = {
    (pid, layer, site, reduction): RNG.random(width).astype(np.float32)
    for pid in LABELS["prompt_id"]
    for layer in range(2)
    for site, reduction, width in [
        *[(site, "sumsq", 6) for site in WANDA_SITES],
        ("mlp.hook_post", "mean_answer", 5),
        ("mlp.hook_post", "mean_name", 5),
        ("mlp.hook_post", "attribution", 5),
        ("attn.hook_pattern", "name_mass", 3),
        ("attn.hook_z", "attribution", 3),
    ]
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "cache.parquet"
    rows = [
        {"prompt_id": p, "layer": layer, "site": s, "reduction": r, "n": 1, "values": v}
        for (p, layer, s, r), v in VECTORS.items()
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), path)
    return path


def vectors(frame, variation, layer, target, group, statistic):
    match = frame[
        (frame.variation == variation)
        & (frame.layer == layer)
        & (frame.target == target)
        & (frame.group == group)
        & (frame.statistic == statistic)
    ]
    assert len(match) == 1
    return np.array(match.iloc[0]["values"])


def by_hand(variation, race, layer, site, reduction):
    ids = LABELS[(LABELS.variation == variation) & (LABELS.race == race)]["prompt_id"]
    return np.stack([VECTORS[pid, layer, site, reduction] for pid in ids])


def test_wanda_norms(cache):
    frame = score("weights", "wanda", cache, LABELS, GROUPS).to_pandas()
    assert len(frame) == 2 * 2 * 4 * 2  # variations x groups x sites x layers
    expected = np.sqrt(by_hand("chair", "Black", 1, "attn.hook_z", "sumsq").sum(0))
    np.testing.assert_allclose(
        vectors(frame, "chair", 1, "attn.hook_z", "Black", "norm"), expected, rtol=1e-6
    )


@pytest.mark.parametrize("position", ["answer", "name"])
def test_neuron_activation_difference(cache, position):
    frame = score(
        "neurons", "activation", cache, LABELS, GROUPS, parameters={"position": position}
    ).to_pandas()
    white = by_hand("car", "White", 0, "mlp.hook_post", f"mean_{position}").mean(0)
    black = by_hand("car", "Black", 0, "mlp.hook_post", f"mean_{position}").mean(0)
    np.testing.assert_allclose(
        vectors(frame, "car", 0, "mlp.hook_post", "", "diff"), white - black, rtol=1e-6
    )
    np.testing.assert_allclose(vectors(frame, "car", 0, "mlp.hook_post", "White", "mean"), white, rtol=1e-6)


def test_head_name_attention_sum_and_difference(cache):
    frame = score("heads", "name_attention", cache, LABELS, GROUPS).to_pandas()
    white = by_hand("chair", "White", 1, "attn.hook_pattern", "name_mass").mean(0)
    black = by_hand("chair", "Black", 1, "attn.hook_pattern", "name_mass").mean(0)
    np.testing.assert_allclose(
        vectors(frame, "chair", 1, "attn.hook_pattern", "", "sum"), white + black, rtol=1e-6
    )
    np.testing.assert_allclose(
        vectors(frame, "chair", 1, "attn.hook_pattern", "", "diff"), white - black, rtol=1e-6
    )


def test_head_name_attention_median_over_prompts(cache):
    """`aggregate: median` takes each group's per-head median over its prompts (4 per group here)."""
    labels = LABELS.assign(
        variation="car", race=["White", "White", "White", "Black", "Black", "Black", "White", "Black"]
    )
    parameters = {"aggregate": "median"}
    frame = score("heads", "name_attention", cache, labels, GROUPS, parameters=parameters).to_pandas()
    by_race = {
        race: np.stack([VECTORS[p, 0, "attn.hook_pattern", "name_mass"] for p in ids])
        for race, ids in labels.groupby("race")["prompt_id"]
    }
    white, black = np.median(by_race["White"], axis=0), np.median(by_race["Black"], axis=0)
    assert not np.allclose(white, by_race["White"].mean(0))  # the median is not the mean here
    np.testing.assert_allclose(
        vectors(frame, "car", 0, "attn.hook_pattern", "White", "mass"), white, rtol=1e-6
    )
    np.testing.assert_allclose(
        vectors(frame, "car", 0, "attn.hook_pattern", "", "diff"), white - black, rtol=1e-6
    )


def test_attribution_is_the_estimated_change_of_the_smd(cache):
    answers = LABELS.assign(value=[10.0, 12.0, 9.0, 7.0, 1.0, 2.0, 2.0, 2.5])
    frame = score("heads", "attribution", cache, LABELS, GROUPS, answers).to_pandas()
    white, black = np.array([10.0, 12.0]), np.array([9.0, 7.0])
    s_p = np.sqrt((white.var(ddof=1) + black.var(ddof=1)) / 2)  # equal sizes: pooled = mean variance
    effect = by_hand("car", "White", 0, "attn.hook_z", "attribution").mean(0) - by_hand(
        "car", "Black", 0, "attn.hook_z", "attribution"
    ).mean(0)
    np.testing.assert_allclose(
        vectors(frame, "car", 0, "attn.hook_z", "", "smd_effect"), effect / s_p, rtol=1e-5
    )
