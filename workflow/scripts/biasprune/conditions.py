"""The study's result tables: every condition's bias against the unpruned model, and the transfer matrix.

`conditions` (tidy): one row per (unit, method, scope, condition, setting, control, seed, evaluated domain,
variation) and one per evaluated domain (`level` = domain), with SMD and CI, relative reduction and its
paired CI, Mann-Whitney p, invalid rate, inlier ratio, KL damage on the neutral prompts, the number and share
of pruned components (the mean over a condition's folds), `name_folds` (1: the same names selected and
evaluated the masks; k: cross-fitted, each name read under the masks selected without its fold); rows of the condition's own mask (control = pruned) carry, for each control (random,
matched, generic), the mean, SD and count over seeds of its figures (`{control}_{figure}_mean|std`,
`n_{control}`). A mask that prunes nothing is `vacuous`: its measured columns are empty, never 0. Conditions of scope `variation` and `loo` are also pooled per
domain (`{d}/*`: each variation under its own mask; `{d}/-*`: each variation under the mask of the
others), the within-context rows of the transfer matrix.

`names`: per condition, control and seed, and for the unpruned answers (control = base), per-name
(count, sum, sumsq) of the valid answers, answers, and answers inside the unpruned 5-95% band: what the
findings' paired name bootstrap reads.

`transfer`: the domain-level rows of control = pruned with the selection (rows of the matrix: a domain's
variation masks, its leave-one-out masks, a domain's common mask, the pool of all other domains) against
the evaluated domain (columns).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import comparison_table
from .vocabulary import (
    BASE,
    CONTROLS,
    PRUNED,
    Condition,
    generalisation,
    units_label,
    within,
)
from .weighting import MASSES, name_summaries

KEYS = ["unit", "method", "scope", "condition", "setting"]
CONTROL_FIGURES = ["abs_smd", "reduction", "abs_change", "invalid_rate", "inlier_ratio", "kl"]
# What a vacuous mask (nothing pruned) has not measured.
MEASURED = [
    "smd",
    "smd_low",
    "smd_high",
    "abs_smd",
    "reduction",
    "reduction_low",
    "reduction_high",
    "abs_change",
    "abs_change_low",
    "abs_change_high",
    "mwu_p",
    "invalid_rate",
    "inlier_ratio",
    "kl",
    *MASSES,
]


def total_components(manifest: dict) -> int:
    """Every component a mask of this unit could remove (all entries, units or heads of the model)."""
    return int(sum(np.prod(shape) for shape in manifest["shapes"].values()))


def _pooled(frame: pd.DataFrame, scope: str, domain: str) -> pd.DataFrame:
    """Variation and leave-one-out conditions of a domain as one condition: each variation under its mask."""
    pooled = frame.copy()
    pooled["condition"] = Condition(scope, domain).format()
    return pooled


def evaluated_table(
    evaluated: pd.DataFrame, base: pd.DataFrame, groups: Sequence[str], metrics: dict
) -> pd.DataFrame:
    """Comparison rows of one evaluate output (one unit, method, scope and evaluated domain).

    `evaluated` and `base` carry the prompt labels (domain, variation, name, race)."""
    scope, domain = evaluated["scope"].iloc[0], base["domain"].iloc[0]
    frames = [evaluated]
    if within(scope):
        frames.append(_pooled(evaluated, scope, domain))
    rows = []
    by = [*KEYS, "control", "seed", "in_sample"]
    for frame in frames:
        for key, part in frame.groupby(by, sort=False):
            table = comparison_table(
                part,
                base[base["variation"].isin(part["variation"].unique())],
                groups,
                metrics["bootstrap"],
                metrics["confidence"],
                metrics["seed"],
                metrics.get("winsorize"),
            )
            # the mean over the masks pooled: a condition's folds, a domain's variations
            table["n_pruned"] = part.groupby(["condition", "fold"])["n_pruned"].first().mean()
            # 1: the same names selected and evaluated; k: each name under masks selected without its fold
            table["name_folds"] = part["fold"].nunique() if (part["fold"] != "").all() else 1
            rows.append(table.assign(**dict(zip(by, key, strict=True))))
    return pd.concat(rows, ignore_index=True)


def _pooled_damage(damage: pd.DataFrame) -> pd.DataFrame:
    """KL of a pooled within-domain condition: the mean over the masks it pools."""
    within_rows = damage[damage["scope"].map(within).astype(bool)].copy()
    within_rows["condition"] = [
        Condition.parse(c, s).pool().format()
        for s, c in zip(within_rows["scope"], within_rows["condition"], strict=True)
    ]
    return within_rows.groupby([*KEYS, "control", "seed"], as_index=False)["kl"].mean()


def _with_control_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Attach to each mask's rows the mean, SD and count over seeds of each of its controls."""
    where = [*KEYS, "domain", "variation", "level"]
    for control in CONTROLS:
        rows = table[table["control"] == control]
        summary = rows.groupby(where, dropna=False)[CONTROL_FIGURES].agg(["mean", "std"])
        summary.columns = [f"{control}_{figure}_{stat}" for figure, stat in summary.columns]
        summary[f"n_{control}"] = rows.groupby(where, dropna=False).size()
        table = table.merge(summary.reset_index(), on=where, how="left")
        table[f"n_{control}"] = table[f"n_{control}"].fillna(0).astype(int)
    return table


def names_table(
    evaluated: Sequence[pd.DataFrame], base: pd.DataFrame, winsorize: Sequence[float] | None = None
) -> pd.DataFrame:
    """Per-name summaries of every evaluation (and of the unpruned answers, control = base), each with the
    `fold` the mask it was read under held out, i.e. the name's own fold ("": all names, its own included,
    selected the mask)."""
    by = [*KEYS, "control", "seed", "in_sample"]
    parts = [
        name_summaries(frame, base[base["domain"] == frame["domain"].iloc[0]], by, winsorize).merge(
            frame[[*by, "name", "fold"]].drop_duplicates(), on=[*by, "name"], validate="many_to_one"
        )
        for frame in evaluated
        if len(frame)
    ]
    unpruned = name_summaries(base, base, winsorize=winsorize).assign(
        **dict.fromkeys(KEYS, ""), control=BASE, seed=-1, in_sample=True, fold=""
    )
    return pd.concat([unpruned[parts[0].columns], *parts], ignore_index=True)


def condition_tables(
    evaluated: Sequence[pd.DataFrame],
    damage: pd.DataFrame,
    manifests: Sequence[dict],
    base: pd.DataFrame,
    groups: Sequence[str],
    metrics: dict,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(conditions, transfer, names) from every evaluate output (each labelled with unit, method, scope and the
    prompt labels), every damage table (labelled likewise) and the unpruned answers of every domain."""
    parts = [
        evaluated_table(frame, base[base["domain"] == frame["domain"].iloc[0]], groups, metrics)
        for frame in evaluated
        if len(frame)
    ]
    table = pd.concat(parts, ignore_index=True)
    totals = pd.DataFrame(
        [
            {"unit": m["unit"], "method": m["method"], "scope": m["scope"], "total": total_components(m)}
            for m in manifests
        ]
    )
    table = table.merge(totals, on=["unit", "method", "scope"], how="left")
    table["share_pruned"] = table["n_pruned"] / table["total"]
    table["vacuous"] = table["n_pruned"] == 0
    damage = pd.concat([damage, _pooled_damage(damage)], ignore_index=True)
    table = table.merge(
        damage[[*KEYS, "control", "seed", "kl"]], on=[*KEYS, "control", "seed"], how="left"
    ).drop(columns="total")
    table.loc[table["vacuous"], MEASURED] = np.nan
    table = _with_control_summary(table)
    first = [*KEYS, "control", "seed", "domain", "variation", "level", "in_sample", "vacuous"]
    table = table[first + [c for c in table.columns if c not in first]]
    return table, transfer_table(table), names_table(evaluated, base, metrics.get("winsorize"))


def pooled(frame: pd.DataFrame) -> pd.Series:
    """Whether each row's condition is a pooled within-domain one (`{d}/*`, `{d}/-*`)."""
    return pd.Series(
        [
            Condition.parse(c, s).pooled if within(s) else False
            for s, c in zip(frame["scope"], frame["condition"], strict=True)
        ],
        index=frame.index,
        dtype=bool,
    )


def whole_masks(frame: pd.DataFrame) -> pd.Series:
    """Whether each row's condition is one mask's own row: pooled within-domain conditions stand for their
    scope's masks of the domain, every other scope's conditions are masks themselves (so a new scope enters
    the transfer table and the levels without being named here)."""
    return pooled(frame) | ~frame["scope"].map(within).astype(bool)


def transfer_table(conditions: pd.DataFrame) -> pd.DataFrame:
    """The (selection x evaluated domain) matrix per unit, method and setting, tidy: domain-level rows of
    each mask (pooled within-domain conditions, each domain's common mask, the pool of the others)."""
    rows = conditions[
        (conditions["control"] == PRUNED) & (conditions["level"] == "domain") & whole_masks(conditions)
    ].copy()
    rows["selection"] = [
        Condition.parse(c, s).selection_label() for s, c in zip(rows["scope"], rows["condition"], strict=True)
    ]
    columns = [
        "unit",
        "method",
        "setting",
        "scope",
        "selection",
        "domain",
        "in_sample",
        "vacuous",
        "n_pruned",
        "share_pruned",
        "name_folds",
        "base_smd",
        "base_measurable",
        "smd",
        "smd_low",
        "smd_high",
        "abs_smd",
        "base_abs_smd",
        "abs_change",
        "abs_change_low",
        "abs_change_high",
        "reduction",
        "reduction_low",
        "reduction_high",
        *[f"{control}_reduction_{stat}" for control in CONTROLS for stat in ("mean", "std")],
        *[f"n_{control}" for control in CONTROLS],
        "kl",
        "random_kl_mean",
        "invalid_rate",
        *MASSES,
    ]
    return rows[columns].rename(columns={"domain": "evaluated"}).reset_index(drop=True)


def level(frame: pd.DataFrame) -> pd.Series:
    """The generalisation level of each domain-level row of control = pruned (None where it has none;
    masks of the within-domain scopes count pooled, `{d}/*` and `{d}/-*`)."""
    counted = whole_masks(frame)
    return pd.Series(
        [
            generalisation(s, bool(i)) if keep else None
            for s, i, keep in zip(frame["scope"], frame["in_sample"], counted, strict=True)
        ],
        index=frame.index,
        dtype=object,
    )


def levels_table(conditions: pd.DataFrame) -> pd.DataFrame:
    """Domain-level rows of the masks themselves with their generalisation level (rows without one dropped)."""
    rows = conditions[(conditions["level"] == "domain") & (conditions["control"] == PRUNED)].copy()
    rows["generalisation"] = level(rows)
    rows["units"] = units_label(rows["unit"], rows["method"])
    return rows.dropna(subset=["generalisation"])


LABELS = ["prompt_id", "domain", "variation", "name", "race"]


def condition_tables_of_files(
    prompts: Sequence[str],
    answers: Sequence[str],
    evaluated: Sequence[str],
    damage: Sequence[str],
    manifests: Sequence[str],
    sets: Sequence[dict],
    groups: Sequence[str],
    metrics: dict,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """condition_tables of a run's files: the prompt tables (labels) and unpruned answers of every domain, and
    per mask file (`sets`: its unit, method and scope, in order) its damage table, manifest and evaluations
    (one per domain it was evaluated on, consecutive). Labels come from `sets`, never from the paths."""
    labels = pd.concat([pd.read_parquet(path, columns=LABELS) for path in prompts])

    def labelled(path):
        return pd.read_parquet(path).merge(labels, on="prompt_id", validate="many_to_one")

    per_set, left = divmod(len(evaluated), len(sets))
    if left:
        raise ValueError(f"{len(evaluated)} evaluations do not split evenly over {len(sets)} mask files")
    return condition_tables(
        [labelled(path).assign(**sets[index // per_set]) for index, path in enumerate(evaluated)],
        pd.concat(
            [pd.read_parquet(path).assign(**mask_set) for path, mask_set in zip(damage, sets, strict=True)],
            ignore_index=True,
        ),
        [json.loads(Path(path).read_text()) for path in manifests],
        pd.concat([labelled(path) for path in answers], ignore_index=True),
        groups,
        metrics,
    )
