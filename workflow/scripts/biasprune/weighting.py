"""Answers as weighted values, and what is read of them before any SMD: the exact readout's distributions
as probability masses (`weighted_answers`), the readout's own masses, winsorising, the unpruned answers' 5-95%
band (inliers, and claim 1's anomalies beyond FENCE) and the per-name sums the findings' bootstrap pools
(`name_summaries`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# The answers table's per-prompt distribution columns (exact readout); null for every other readout.
DISTRIBUTION_COLUMNS = ["support", "probs", "invalid_reasons", "invalid_probs"]


def weighted_answers(answers: pd.DataFrame) -> pd.DataFrame:
    """One row per (answer, value) with a `weight`: a sampled, greedy or expected answer weighs 1; a row of
    the exact readout becomes its support values (weight: probability; invalid with the row's reason when
    the row is, e.g. `low_mass`) and its invalid reasons (weight: mass). Unexplored mass is left out: the
    statistics are those of the explored distribution, and the answers table reports what was left."""
    answers = answers.drop(columns=["grid_probs"], errors="ignore")
    if "support" not in answers or answers["support"].isna().all():
        return answers.drop(columns=DISTRIBUTION_COLUMNS, errors="ignore").assign(weight=1.0)
    exact = answers["support"].notna()
    plain = answers[~exact].drop(columns=DISTRIBUTION_COLUMNS).assign(weight=1.0)
    rows = answers[exact]
    keep = rows.drop(columns=[*DISTRIBUTION_COLUMNS, "value", "reason"])
    values = keep.assign(value=rows["support"], weight=rows["probs"], reason=rows["reason"])
    values = values.explode(["value", "weight"]).dropna(subset=["value"])
    values["reason"] = values["reason"].where(~values["valid"], "ok")
    invalid = keep.assign(reason=rows["invalid_reasons"], weight=rows["invalid_probs"], value=np.nan)
    invalid = invalid.explode(["reason", "weight"]).dropna(subset=["reason"]).assign(valid=False)
    frame = pd.concat([plain, values, invalid], ignore_index=True)
    return frame.astype({"value": float, "weight": float, "valid": bool})


# The readout's own masses, per answers row: the expected readout's grid coverage (the probability of every grid
# form before renormalising), the exact readout's invalid and unexplored masses, the mass its tail draws
# estimated and the Monte Carlo standard error of the prompt's value. NaN where the readout has none.
MASSES = ("coverage", "mass_invalid", "mass_unexplored", "mass_sampled", "value_se")


def readout_masses(answers: pd.DataFrame) -> dict[str, float]:
    """The mean of each of the readout's masses over the answers rows (one row per prompt for the expected
    and exact readouts), before any weighting; NaN for a readout without it (sampled, greedy)."""
    return {
        name: float(answers[name].mean()) if name in answers and answers[name].notna().any() else np.nan
        for name in MASSES
    }


def ddof_of(answers: pd.DataFrame) -> int:
    """1 for answers counted one by one (Cohen's d), 0 for probability-weighted distributions."""
    return 0 if "support" in answers and answers["support"].notna().any() else 1


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """Percentiles `q` (0-100): numpy's linear ones for answers of weight 1, the weighted inverted CDF for
    distributions."""
    if np.all(weights == 1):
        return np.percentile(values, q)
    return np.percentile(values, q, weights=weights, method="inverted_cdf")


def winsorized(frame: pd.DataFrame, band: Sequence[float] | None, by: Sequence[str] = ()) -> pd.DataFrame:
    """Valid values clipped, per (`by`..., domain, variation), at the `band` percentiles of that variation's
    valid values (both groups); None keeps them."""
    if band is None:
        return frame
    frame = frame.copy()
    valid = frame[frame["valid"]]
    for _, part in valid.groupby([*by, "domain", "variation"], sort=False, dropna=False):
        low, high = weighted_quantiles(part["value"].to_numpy(float), part["weight"].to_numpy(float), band)
        frame.loc[part.index, "value"] = part["value"].clip(low, high)
    return frame


BAND = (5, 95)
# Claim 1's anomalous answer: a valid value farther outside the unpruned answers' 5-95% band than the band is
# wide (FENCE band widths on either side), so the rule scales with the unpruned model's own spread under the
# readout that produced it, and a shift smaller than that spread is not an anomaly.
FENCE = 1.0


def inlier_ratio(pruned: np.ndarray, base: np.ndarray, band=BAND, pruned_weights=None, base_weights=None):
    """Share of pruned answers inside the unpruned answers' 5-95% percentile band (the unpruned answers
    themselves score below 1 against it: 0.875 at n = 32; compare with that, never with a constant).
    Weights (distribution readouts) make both the band and the share probability-weighted."""
    pruned_weights = np.ones(len(pruned)) if pruned_weights is None else np.asarray(pruned_weights, float)
    base_weights = np.ones(len(base)) if base_weights is None else np.asarray(base_weights, float)
    if pruned_weights.sum() <= 0 or base_weights.sum() <= 0:
        return np.nan
    low, high = weighted_quantiles(np.asarray(base, float), base_weights, band)
    inside = (pruned >= low) & (pruned <= high)
    return float(np.average(inside, weights=pruned_weights))


def name_summaries(
    answers: pd.DataFrame,
    base: pd.DataFrame,
    by: Sequence[str] = (),
    winsorize: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Per (`by`..., domain, variation, name, race): answers, valid answers, sum and sum of squares of the
    valid values, how many valid values lie inside the unpruned answers' 5-95% band of the variation
    (`n_inlier`) and how many lie farther outside it than it is wide (`n_far`, claim 1's anomalies), all
    weighted (probability masses for the exact readout; `ddof` says which); and the probability the readout
    placed on valid numbers (`mass_valid`: the expected readout's valid answers count by their grid coverage)
    out of all it read (`mass_total`: the exact readout adds its unexplored mass). Everything the findings'
    name bootstrap needs, as (count, sum, sumsq) are for the SMD."""
    ddof = ddof_of(base)
    keys = [*by, "domain", "variation", "name", "race"]
    unexplored = answers.get("mass_unexplored", pd.Series(0.0, index=answers.index)).fillna(0.0)
    unexplored = unexplored.groupby([answers[k] for k in keys], sort=False, dropna=False).sum()
    answers = winsorized(weighted_answers(answers), winsorize, by)
    base = winsorized(weighted_answers(base), winsorize)
    valid = base[base["valid"]]
    bands = pd.DataFrame(
        [
            (
                domain,
                variation,
                *weighted_quantiles(part["value"].to_numpy(), part["weight"].to_numpy(), BAND),
            )
            for (domain, variation), part in valid.groupby(["domain", "variation"], sort=False)
        ],
        columns=["domain", "variation", "band_low", "band_high"],
    )
    frame = answers.merge(bands, on=["domain", "variation"], how="left")
    weight = frame["weight"].where(frame["valid"], 0.0)
    value = frame["value"].where(frame["valid"]).fillna(0)
    inside = (frame["value"] >= frame["band_low"]) & (frame["value"] <= frame["band_high"])
    width = FENCE * (frame["band_high"] - frame["band_low"])
    far = (frame["value"] < frame["band_low"] - width) | (frame["value"] > frame["band_high"] + width)
    coverage = frame["coverage"].fillna(1.0) if "coverage" in frame else 1.0
    frame = frame.assign(
        n_valid=weight,
        total=weight * value,
        total_sq=weight * value**2,
        n_inlier=weight.where(inside, 0.0),
        n_far=weight.where(far, 0.0),
        mass_valid=weight * coverage,
    )
    table = frame.groupby(keys, sort=False, dropna=False).agg(
        n_answers=("weight", "sum"),
        n_valid=("n_valid", "sum"),
        total=("total", "sum"),
        total_sq=("total_sq", "sum"),
        n_inlier=("n_inlier", "sum"),
        n_far=("n_far", "sum"),
        mass_valid=("mass_valid", "sum"),
    )
    table["mass_total"] = table["n_answers"] + unexplored.reindex(table.index).fillna(0.0).to_numpy()
    return table.reset_index().assign(ddof=ddof)
