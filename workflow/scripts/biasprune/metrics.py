"""Bias tables: per (domain, variation) and per domain, with bootstrap CIs and invalid answers reported."""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .stats import (
    bootstrap_indices,
    bootstrap_smd,
    mann_whitney_p,
    name_sums,
    percentile_interval,
    permutation_abs_smd,
    permutation_p,
    smd,
)

log = logging.getLogger(__name__)


def _per_name(frame: pd.DataFrame, names: Sequence[str]) -> list[np.ndarray]:
    valid = frame[frame["valid"]]
    grouped = {name: group["value"].to_numpy(float) for name, group in valid.groupby("name")}
    return [grouped.get(name, np.empty(0)) for name in names]


def _group_summary(frame: pd.DataFrame, suffix: str) -> dict:
    values = frame.loc[frame["valid"], "value"].to_numpy(float)
    invalid = frame.loc[~frame["valid"], "reason"].value_counts()
    return {
        f"n_{suffix}": len(values),
        f"mean_{suffix}": float(values.mean()) if len(values) else np.nan,
        f"sd_{suffix}": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
        f"n_invalid_{suffix}": int((~frame["valid"]).sum()),
        f"invalid_rate_{suffix}": float((~frame["valid"]).mean()) if len(frame) else np.nan,
        f"invalid_reasons_{suffix}": ",".join(f"{reason}:{count}" for reason, count in invalid.items()),
    }


def _variation_stats(part: pd.DataFrame, names: dict, groups: Sequence[str], draws):
    """Valid values of each group, the SMD, its bootstrap resamples (names drawn by `draws`) and the
    per-name (count, sum, sumsq) triples, reference names first."""
    per_name = [_per_name(part[part["race"] == group], names[group]) for group in groups]
    reference, focal = (np.concatenate(values) for values in per_name)
    sums = np.concatenate([name_sums(values) for values in per_name])
    return reference, focal, smd(reference, focal), bootstrap_smd(*per_name, indices=draws), sums


def measurable(low: float, high: float) -> bool:
    """A baseline gap is measurable when its signed-SMD interval excludes 0."""
    return bool(low > 0 or high < 0)


def name_draws(names: dict, groups: Sequence[str], resamples: int, seed: int, domain: str):
    """The name resamples of a domain: the same for every table of the study (so tables pair up)."""
    reference, focal = groups
    return bootstrap_indices(
        len(names[reference]), len(names[focal]), resamples, seed + zlib.crc32(str(domain).encode())
    )


def _names(frame: pd.DataFrame, groups: Sequence[str]) -> dict[str, list[str]]:
    return {group: list(dict.fromkeys(frame.loc[frame["race"] == group, "name"])) for group in groups}


def bias_table(
    answers: pd.DataFrame,
    groups: Sequence[str],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    permutations: int = 2000,
) -> pd.DataFrame:
    """One row per (domain, variation) and one per domain (mean |SMD| over its variations).

    `answers` has one row per answer with domain, variation, name, race, value, valid, reason.
    SMD = (mean of groups[0] - mean of groups[1]) / pooled SD over all valid answers of the variation;
    CIs resample names within each group (the same resampled names for every variation of a domain), and
    `measurable` says whether the signed interval excludes 0. |SMD| (and the domain's mean |SMD|) is tested
    against a permutation null, race labels permuted over the names (`abs_smd_p`): a percentile interval of
    |SMD| never contains 0 and is not shown. Invalid answers are excluded and counted per group.
    """
    reference, focal = groups
    rows = []
    for domain, frame in answers.groupby("domain", sort=False):
        names = _names(frame, groups)
        draws = name_draws(names, groups, resamples, seed, domain)
        sums = []
        for variation, part in frame.groupby("variation", sort=False):
            ref_part, focal_part = part[part["race"] == reference], part[part["race"] == focal]
            ref_values, focal_values, value, boots, name_sums_ = _variation_stats(part, names, groups, draws)
            sums.append(name_sums_)
            low, high = percentile_interval(boots, confidence)
            if not np.isfinite(value):
                log.warning(
                    "%s / %s: no SMD (valid answers: %d vs %d)",
                    domain,
                    variation,
                    len(ref_values),
                    len(focal_values),
                )
            rows.append(
                {
                    "domain": domain,
                    "variation": variation,
                    "level": "variation",
                    **_group_summary(ref_part, "ref"),
                    **_group_summary(focal_part, "focal"),
                    "smd": value,
                    "smd_low": low,
                    "smd_high": high,
                    "measurable": measurable(low, high),
                    "abs_smd": abs(value),
                    "mwu_p": mann_whitney_p(ref_values, focal_values),
                }
            )
        variation_rows = rows[-len(sums) :]
        labels = np.arange(len(names[reference]) + len(names[focal])) < len(names[reference])
        observed, permuted = permutation_abs_smd(np.stack(sums), labels, permutations, seed)
        for row, p in zip(variation_rows, permutation_p(observed, permuted), strict=True):
            row["abs_smd_p"] = float(p)
        smds = np.array([row["smd"] for row in variation_rows])
        with warnings.catch_warnings():  # permutations where no variation has an SMD stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_p = permutation_p(np.nanmean(observed), np.nanmean(permuted, axis=1))
        summary = {
            "domain": domain,
            "variation": None,
            "level": "domain",
            **_group_summary(frame[frame["race"] == reference], "ref"),
            **_group_summary(frame[frame["race"] == focal], "focal"),
            "smd": np.nan,
            "smd_low": np.nan,
            "smd_high": np.nan,
            "measurable": bool(any(row["measurable"] for row in variation_rows)),
            "abs_smd": float(np.nanmean(np.abs(smds))) if np.isfinite(smds).any() else np.nan,
            "abs_smd_p": float(mean_p),
            "mwu_p": np.nan,
        }
        # Means over variations of different scale (a chair and a car) mean nothing: left empty.
        summary.update(mean_ref=np.nan, mean_focal=np.nan, sd_ref=np.nan, sd_focal=np.nan)
        if not np.isfinite(summary["abs_smd"]):
            log.warning(
                "%s: no variation has an SMD (invalid rate %.2f / %.2f)",
                domain,
                summary["invalid_rate_ref"],
                summary["invalid_rate_focal"],
            )
        rows.append(summary)
    table = pd.DataFrame(rows)
    table.insert(3, "group_ref", reference)
    table.insert(4, "group_focal", focal)
    return table


def _mean_abs(boots: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():  # resamples where no variation has an SMD stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.abs(np.stack(boots)), axis=0)


def _reduction(pruned, base) -> np.ndarray:
    """1 - |SMD_pruned| / |SMD_base| (elementwise; NaN where the base has no gap)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - np.abs(pruned) / np.abs(base)


BAND = (5, 95)


def inlier_ratio(pruned: np.ndarray, base: np.ndarray, band=BAND) -> float:
    """Share of pruned answers inside the unpruned answers' 5-95% percentile band (the unpruned answers
    themselves score below 1 against it: 0.875 at n = 32; compare with that, never with a constant)."""
    if len(pruned) == 0 or len(base) == 0:
        return np.nan
    low, high = np.percentile(base, band)
    return float(((pruned >= low) & (pruned <= high)).mean())


def name_summaries(answers: pd.DataFrame, base: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Per (`by`..., domain, variation, name, race): answers, valid answers, sum and sum of squares of the
    valid values, and how many valid values lie inside the unpruned answers' 5-95% band of the variation.
    Everything the findings' name bootstrap needs, as (count, sum, sumsq) are for the SMD."""
    valid = base[base["valid"]]
    bands = valid.groupby(["domain", "variation"])["value"].quantile([BAND[0] / 100, BAND[1] / 100])
    bands = bands.unstack().set_axis(["band_low", "band_high"], axis=1).reset_index()
    frame = answers.merge(bands, on=["domain", "variation"], how="left")
    value = frame["value"].where(frame["valid"])
    frame = frame.assign(
        n_valid=frame["valid"].astype(int),
        total=value.fillna(0),
        total_sq=value.fillna(0) ** 2,
        n_inlier=(frame["valid"] & (value >= frame["band_low"]) & (value <= frame["band_high"])).astype(int),
    )
    keys = [*by, "domain", "variation", "name", "race"]
    return (
        frame.groupby(keys, sort=False, dropna=False)
        .agg(
            n_answers=("valid", "size"),
            n_valid=("n_valid", "sum"),
            total=("total", "sum"),
            total_sq=("total_sq", "sum"),
            n_inlier=("n_inlier", "sum"),
        )
        .reset_index()
    )


def comparison_table(
    pruned: pd.DataFrame,
    base: pd.DataFrame,
    groups: Sequence[str],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The bias of one domain's answers under a mask next to the unpruned answers of the same prompts.

    One row per evaluated variation and one `domain` row (mean |SMD| over them). The relative reduction
    1 - |SMD_pruned| / |SMD_base| gets its CI from resamples of names drawn identically for both (paired),
    the draws bias_table uses, so the unpruned SMD here equals the baseline table's.
    """
    (domain,) = base["domain"].unique()
    names = _names(base, groups)
    draws = name_draws(names, groups, resamples, seed, domain)
    rows, boots, base_boots = [], [], []
    for variation, part in pruned.groupby("variation", sort=False):
        base_part = base[base["variation"] == variation]
        ref_values, focal_values, value, resampled, _ = _variation_stats(part, names, groups, draws)
        *_, base_value, base_resampled, _ = _variation_stats(base_part, names, groups, draws)
        boots.append(resampled)
        base_boots.append(base_resampled)
        valid, base_valid = part.loc[part["valid"], "value"], base_part.loc[base_part["valid"], "value"]
        smd_low, smd_high = percentile_interval(resampled, confidence)
        reduction_low, reduction_high = percentile_interval(_reduction(resampled, base_resampled), confidence)
        rows.append(
            {
                "domain": domain,
                "variation": variation,
                "level": "variation",
                "n_answers": len(part),
                "smd": value,
                "smd_low": smd_low,
                "smd_high": smd_high,
                "abs_smd": abs(value),
                "base_smd": base_value,
                "base_abs_smd": abs(base_value),
                "base_measurable": measurable(*percentile_interval(base_resampled, confidence)),
                "abs_change": abs(value) - abs(base_value),
                **dict(
                    zip(
                        ("abs_change_low", "abs_change_high"),
                        percentile_interval(np.abs(resampled) - np.abs(base_resampled), confidence),
                        strict=True,
                    )
                ),
                "reduction": float(_reduction(value, base_value)),
                "reduction_low": reduction_low,
                "reduction_high": reduction_high,
                "mwu_p": mann_whitney_p(ref_values, focal_values),
                "invalid_rate": float((~part["valid"]).mean()),
                "base_invalid_rate": float((~base_part["valid"]).mean()),
                "inlier_ratio": inlier_ratio(valid.to_numpy(float), base_valid.to_numpy(float)),
            }
        )
    frame = pd.DataFrame(rows)
    with warnings.catch_warnings():  # no variation with an SMD: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        abs_smd, base_abs = np.nanmean(frame["abs_smd"]), np.nanmean(frame["base_abs_smd"])
    low, high = percentile_interval(_reduction(_mean_abs(boots), _mean_abs(base_boots)), confidence)
    change_low, change_high = percentile_interval(_mean_abs(boots) - _mean_abs(base_boots), confidence)
    evaluated = base[base["variation"].isin(frame["variation"])]
    summary = {
        "domain": domain,
        "variation": None,
        "level": "domain",
        "n_answers": len(pruned),
        "abs_smd": abs_smd,
        "base_abs_smd": base_abs,
        "base_measurable": bool(frame["base_measurable"].any()),
        "abs_change": abs_smd - base_abs,
        "abs_change_low": change_low,
        "abs_change_high": change_high,
        "reduction": float(_reduction(abs_smd, base_abs)),
        "reduction_low": low,
        "reduction_high": high,
        "invalid_rate": float((~pruned["valid"]).mean()),
        "base_invalid_rate": float((~evaluated["valid"]).mean()),
        "inlier_ratio": float(np.average(frame["inlier_ratio"], weights=frame["n_answers"])),
    }
    return pd.concat([frame, pd.DataFrame([summary])], ignore_index=True)
