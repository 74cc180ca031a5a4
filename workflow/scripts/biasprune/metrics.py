"""Bias tables: per (domain, variation) and per domain, with bootstrap CIs and invalid answers reported."""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .stats import bootstrap_indices, bootstrap_smd, mann_whitney_p, percentile_interval, smd

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


def bias_table(
    answers: pd.DataFrame,
    groups: Sequence[str],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (domain, variation) and one per domain (mean |SMD| over its variations).

    `answers` has one row per answer with domain, variation, name, race, value, valid, reason.
    SMD = (mean of groups[0] - mean of groups[1]) / pooled SD over all valid answers of the variation;
    CIs resample names within each group (the same resampled names for every variation of a domain).
    Invalid answers are excluded from the statistics and counted per group.
    """
    reference, focal = groups
    rows = []
    for domain, frame in answers.groupby("domain", sort=False):
        names = {group: list(dict.fromkeys(frame.loc[frame["race"] == group, "name"])) for group in groups}
        draws = bootstrap_indices(
            len(names[reference]), len(names[focal]), resamples, seed + zlib.crc32(str(domain).encode())
        )
        resampled = []
        for variation, part in frame.groupby("variation", sort=False):
            ref_part, focal_part = part[part["race"] == reference], part[part["race"] == focal]
            ref_names, focal_names = (
                _per_name(ref_part, names[reference]),
                _per_name(focal_part, names[focal]),
            )
            ref_values, focal_values = np.concatenate(ref_names), np.concatenate(focal_names)
            value = smd(ref_values, focal_values)
            boots = bootstrap_smd(ref_names, focal_names, indices=draws)
            resampled.append(boots)
            low, high = percentile_interval(boots, confidence)
            abs_low, abs_high = percentile_interval(np.abs(boots), confidence)
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
                    "abs_smd": abs(value),
                    "abs_smd_low": abs_low,
                    "abs_smd_high": abs_high,
                    "mwu_p": mann_whitney_p(ref_values, focal_values),
                }
            )
        variation_rows = rows[-len(resampled) :]
        smds = np.array([row["smd"] for row in variation_rows])
        with warnings.catch_warnings():  # resamples where no variation has an SMD stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            boots_mean = np.nanmean(np.abs(np.stack(resampled)), axis=0)
        low, high = percentile_interval(boots_mean, confidence)
        summary = {
            "domain": domain,
            "variation": None,
            "level": "domain",
            **_group_summary(frame[frame["race"] == reference], "ref"),
            **_group_summary(frame[frame["race"] == focal], "focal"),
            "smd": np.nan,
            "smd_low": np.nan,
            "smd_high": np.nan,
            "abs_smd": float(np.nanmean(np.abs(smds))) if np.isfinite(smds).any() else np.nan,
            "abs_smd_low": low,
            "abs_smd_high": high,
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
