"""Scores per unit and method, aggregated from the activation cache by (variation, group).

Long format, one row per (variation, layer, target, group, statistic) with a float32 vector:

| unit/method | target | group | statistic | vector |
|---|---|---|---|---|
| weights/wanda | input site of a linear layer (see models.LINEAR_INPUTS) | each group | `norm` | ||X_j||_2 over the group's prompts of the variation; the score of W_ij is |W_ij| * norm_j |
| neurons/activation | mlp.hook_post | each group | `mean` | mean MLP-unit activation at the configured positions |
| neurons/activation | mlp.hook_post | (empty) | `diff` | mean of groups[0] minus mean of groups[1] |
| heads/name_attention | attn.hook_pattern | each group | `mass` | mean attention from answer positions onto the name, per head |
| heads/name_attention | attn.hook_pattern | (empty) | `sum`, `diff` | the paper's sum of both groups; groups[0] minus groups[1] |
| neurons/attribution, heads/attribution | mlp.hook_post / attn.hook_z | each group | `effect_mean` | mean first-order change of the expected answer when the unit is zeroed |
| neurons/attribution, heads/attribution | mlp.hook_post / attn.hook_z | (empty) | `smd_effect` | estimated change of the variation's SMD when the unit is zeroed: (effect_mean[0] - effect_mean[1]) / s_p |
| directions/mean_difference, directions/leace | the prompt id | the prompt's group | `residual` | the prompt's residual at the configured position (layer 0..n_layers); the masks rule fits the edits on them |
| directions/* | resid | each group | `mean` | the group's mean residual (for inspection) |
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .methods import method_names
from .stats import pooled_sd
from .vocabulary import RESIDUAL_REDUCTIONS, RESIDUAL_SITE, WANDA_SITES

SCORE_SCHEMA = pa.schema(
    [
        ("variation", pa.string()),
        ("layer", pa.int16()),
        ("target", pa.string()),
        ("group", pa.string()),
        ("statistic", pa.string()),
        ("values", pa.list_(pa.float32())),
    ]
)


def cache_matrices(path, site: str, reduction: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{layer: (prompt ids, prompts x features)} of one site and reduction, read with a filter."""
    table = pq.read_table(
        path,
        columns=["prompt_id", "layer", "values"],
        filters=[("site", "=", site), ("reduction", "=", reduction)],
    )
    layers = table.column("layer").to_numpy()
    result = {}
    for layer in np.unique(layers):
        part = table.filter(pc.equal(table.column("layer"), layer))
        values = part.column("values").combine_chunks()
        matrix = values.flatten().to_numpy().reshape(len(part), -1)
        result[int(layer)] = (part.column("prompt_id").to_numpy(zero_copy_only=False), matrix)
    return result


def _group_means(ids, matrix, labels: pd.DataFrame, groups, reduce="mean"):
    """{(variation, group): reduced vector} over the prompts of each (variation, group)."""
    frame = labels.set_index("prompt_id").loc[ids]
    out = {}
    for (variation, race), index in (
        frame.reset_index().groupby(["variation", "race"], sort=False).groups.items()
    ):
        if race in groups:
            rows = matrix[np.asarray(index)]
            out[variation, race] = {"sum": np.sum, "mean": np.mean, "median": np.median}[reduce](rows, axis=0)
    return out


def score_rows(records) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "variation": v,
                "layer": layer,
                "target": t,
                "group": g,
                "statistic": s,
                "values": np.asarray(x, np.float32),
            }
            for v, layer, t, g, s, x in records
        ],
        schema=SCORE_SCHEMA,
    )


def _variations(labels: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(labels["variation"]))


def wanda(cache, labels: pd.DataFrame, groups: Sequence[str]) -> pa.Table:
    """Per (variation, group) the L2 norm of every input feature of every linear layer."""
    records = []
    for site in WANDA_SITES:
        for layer, (ids, matrix) in cache_matrices(cache, site, "sumsq").items():
            sums = _group_means(ids, matrix, labels, groups, reduce="sum")
            records += [(v, layer, site, g, "norm", np.sqrt(x)) for (v, g), x in sums.items()]
    return score_rows(records)


def _difference_rows(cache, labels, groups, site, reduction, group_statistic, extra, aggregate="mean"):
    records = []
    reference, focal = groups
    for layer, (ids, matrix) in cache_matrices(cache, site, reduction).items():
        means = _group_means(ids, matrix, labels, groups, reduce=aggregate)
        for variation in _variations(labels):
            ref, foc = means.get((variation, reference)), means.get((variation, focal))
            if ref is None or foc is None:
                continue
            records += [
                (variation, layer, site, reference, group_statistic, ref),
                (variation, layer, site, focal, group_statistic, foc),
            ]
            records += [
                (variation, layer, site, "", name, value)
                for name, value in extra(variation, ref, foc).items()
            ]
    return score_rows(records)


def neuron_activation(cache, labels, groups, position: str = "answer") -> pa.Table:
    """Group difference of mean MLP-unit activation at the name or answer positions."""
    return _difference_rows(
        cache, labels, groups, "mlp.hook_post", f"mean_{position}", "mean", lambda v, r, f: {"diff": r - f}
    )


def head_name_attention(cache, labels, groups, aggregate: str = "mean") -> pa.Table:
    """Attention mass onto the name per head and group, aggregated over the group's prompts by `aggregate`
    (the paper's mean, or the median: robust to a few prompts whose name draws unusual attention); the
    paper's sum of the two groups and their difference."""
    return _difference_rows(
        cache,
        labels,
        groups,
        "attn.hook_pattern",
        "name_mass",
        "mass",
        lambda v, r, f: {"sum": r + f, "diff": r - f},
        aggregate,
    )


def attribution(cache, labels, groups, answers: pd.DataFrame, site: str) -> pa.Table:
    """Estimated change of each variation's SMD when a unit (MLP unit or head) is zeroed.

    answers: valid baseline answers with variation, race and value (for each variation's pooled SD).
    """
    reference, focal = groups
    spread = {}
    for variation, part in answers.groupby("variation", sort=False):
        ref = part.loc[part["race"] == reference, "value"].to_numpy(float)
        spread[variation] = pooled_sd(ref, part.loc[part["race"] == focal, "value"].to_numpy(float))

    def effect(variation, ref, foc):
        sd = spread.get(variation, np.nan)
        return {"smd_effect": (ref - foc) / sd if sd and sd > 0 else np.full_like(ref, np.nan)}

    return _difference_rows(cache, labels, groups, site, "attribution", "effect_mean", effect)


def residuals(cache, labels: pd.DataFrame, groups: Sequence[str], position: str = "name") -> pa.Table:
    """Every prompt's residual at the last name token or the answer position (one row per prompt and layer,
    its id as target), and each (variation, group)'s mean: what a direction is fitted on."""
    records = []
    frame = labels.set_index("prompt_id")
    for layer, (ids, matrix) in cache_matrices(cache, RESIDUAL_SITE, RESIDUAL_REDUCTIONS[position]).items():
        rows = frame.loc[ids]
        chosen = rows["race"].isin(groups).to_numpy()
        records += [
            (variation, layer, prompt_id, race, "residual", vector)
            for prompt_id, variation, race, vector in zip(
                np.asarray(ids)[chosen],
                rows["variation"][chosen],
                rows["race"][chosen],
                matrix[chosen],
                strict=True,
            )
        ]
        records += [
            (v, layer, RESIDUAL_SITE, g, "mean", x)
            for (v, g), x in _group_means(ids, matrix, labels, groups).items()
        ]
    return score_rows(records)


# The scoring function of every cache-scored method of the registry (methods.METHODS, rule `scores`):
# called as function(cache, labels, groups, answers, parameters).
SCORERS = {
    ("weights", "wanda"): lambda cache, labels, groups, answers, parameters: wanda(cache, labels, groups),
    ("neurons", "activation"): lambda cache, labels, groups, answers, parameters: neuron_activation(
        cache, labels, groups, parameters.get("position", "answer")
    ),
    ("heads", "name_attention"): lambda cache, labels, groups, answers, parameters: head_name_attention(
        cache, labels, groups, parameters.get("aggregate", "mean")
    ),
    ("neurons", "attribution"): lambda cache, labels, groups, answers, parameters: attribution(
        cache, labels, groups, answers, "mlp.hook_post"
    ),
    ("heads", "attribution"): lambda cache, labels, groups, answers, parameters: attribution(
        cache, labels, groups, answers, "attn.hook_z"
    ),
    **{
        ("directions", method): lambda cache, labels, groups, answers, parameters: residuals(
            cache, labels, groups, parameters.get("position", "name")
        )
        for method in method_names("directions")
    },
}


def score(unit: str, method: str, cache, labels, groups, answers=None, parameters=None) -> pa.Table:
    """One unit's scores by one method (of the registry) for one domain."""
    if (unit, method) not in SCORERS:
        raise ValueError(f"no method {method!r} for unit {unit!r}")
    return SCORERS[unit, method](cache, labels, groups, answers, parameters or {})
