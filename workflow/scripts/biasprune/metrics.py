"""Bias tables: per (domain, variation) and per domain, with bootstrap CIs and invalid answers reported (the
baseline's `bias_table`, a mask's `comparison_table` next to the unpruned answers), and the study's name
draws. The answers enter weighted and winsorised by weighting.py."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .stats import (
    bootstrap_indices,
    bootstrap_smd_of_sums,
    mann_whitney_p,
    name_sums,
    percentile_interval,
    permutation_abs_smd,
    permutation_p,
    smd_from_sums,
)
from .weighting import (
    BAND,
    ddof_of,
    inlier_ratio,
    readout_masses,
    weighted_answers,
    winsorized,
)

log = logging.getLogger(__name__)


def _per_name(frame: pd.DataFrame, names: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(values, weights) of each name's valid answers."""
    valid = frame[frame["valid"]]
    grouped = {
        name: (group["value"].to_numpy(float), group["weight"].to_numpy(float))
        for name, group in valid.groupby("name")
    }
    return [grouped.get(name, (np.empty(0), np.empty(0))) for name in names]


def _name_means(per_name) -> np.ndarray:
    """Each name's mean valid answer (names without one left out): the units Mann-Whitney compares, as a
    name's answers are not independent of each other."""
    return np.array([np.average(v, weights=w) for v, w in per_name if w.sum() > 0])


def _group_summary(frame: pd.DataFrame, suffix: str, ddof: int = 1) -> dict:
    valid = frame[frame["valid"]]
    values, weights = valid["value"].to_numpy(float), valid["weight"].to_numpy(float)
    n, total = weights.sum(), frame["weight"].sum()
    invalid = frame[~frame["valid"]].groupby("reason")["weight"].sum().sort_values(ascending=False)
    mean = float(np.average(values, weights=weights)) if n > 0 else np.nan
    variance = float((weights * (values - mean) ** 2).sum() / (n - ddof)) if n > ddof else np.nan
    counted = ddof == 1  # counts of answers stay integers; masses are shown to 3 decimals
    show = round if counted else float
    return {
        f"n_{suffix}": show(n),
        f"mean_{suffix}": mean,
        f"sd_{suffix}": float(np.sqrt(variance)) if np.isfinite(variance) else np.nan,
        f"n_invalid_{suffix}": show(total - n),
        f"invalid_rate_{suffix}": float((total - n) / total) if total > 0 else np.nan,
        f"invalid_reasons_{suffix}": ",".join(
            f"{reason}:{show(mass) if counted else f'{mass:.3f}'}" for reason, mass in invalid.items()
        ),
    }


@dataclass(frozen=True)
class _VariationBias:
    """The bias of one variation's answers. `columns`: the row both tables show (SMD, its interval over the
    name resamples, whether that interval excludes 0, |SMD|, the Mann-Whitney p of the names' mean answers,
    reference against focal); `resampled`: the SMD of each name resample; `sums`: the per-name (count, sum,
    sumsq) triples, reference names first; `valid`: each group's valid answers (weights)."""

    columns: dict
    resampled: np.ndarray
    sums: np.ndarray
    valid: tuple[float, float]


def _point(part: pd.DataFrame, names: dict, groups: Sequence[str], ddof: int):
    """(each group's per-name answers, each group's per-name sums, the SMD) of one variation's answers."""
    per_name = [_per_name(part[part["race"] == group], names[group]) for group in groups]
    ref, foc = (name_sums([v for v, _ in values], [w for _, w in values]) for values in per_name)
    return per_name, ref, foc, float(smd_from_sums(ref.sum(0), foc.sum(0), ddof))


def _variation_bias(
    part: pd.DataFrame, names: dict, groups: Sequence[str], draws, ddof: int, confidence: float
) -> _VariationBias:
    """The bias row of one variation's answers, names resampled by `draws` (see name_draws): what bias_table
    shows per variation, and comparison_table for the answers under a mask and for the unpruned ones."""
    per_name, ref, foc, value = _point(part, names, groups, ddof)
    resampled = bootstrap_smd_of_sums(ref, foc, indices=draws, ddof=ddof)
    low, high = percentile_interval(resampled, confidence)
    columns = {
        "smd": value,
        "smd_low": low,
        "smd_high": high,
        "measurable": measurable(low, high),
        "abs_smd": abs(value),
        "mwu_p": mann_whitney_p(*(_name_means(values) for values in per_name)),
    }
    valid = tuple(sum(w.sum() for _, w in values) for values in per_name)
    return _VariationBias(columns, resampled, np.concatenate([ref, foc]), valid)


def _invalid_rate(frame: pd.DataFrame) -> float:
    total = frame["weight"].sum()
    return float(frame.loc[~frame["valid"], "weight"].sum() / total) if total > 0 else np.nan


def measurable(low: float, high: float) -> bool:
    """A baseline gap is measurable when its signed-SMD interval excludes 0."""
    return bool(low > 0 or high < 0)


def name_draws(names: dict, groups: Sequence[str], resamples: int, seed: int):
    """The name resamples of the study: one draw per study, the same in every domain and table, so a name
    drawn twice counts twice in every cell it answers and cells pooled across domains keep their covariance
    (`names` in the order of group_names, the same in every domain)."""
    reference, focal = groups
    return bootstrap_indices(len(names[reference]), len(names[focal]), resamples, seed)


def group_names(frame: pd.DataFrame, groups: Sequence[str]) -> dict[str, list[str]]:
    """{group: its names, sorted}: an order that does not depend on a domain's rows, so that name_draws
    resample the same names in every domain."""
    return {group: sorted(set(frame.loc[frame["race"] == group, "name"])) for group in groups}


def labelled_answers(answer_files: Sequence, prompt_files: Sequence) -> pd.DataFrame:
    """The answers of several domains, each row with its prompt's domain, variation, name and race."""
    frames = []
    for answers, prompts in zip(answer_files, prompt_files, strict=True):
        labels = pd.read_parquet(prompts, columns=["prompt_id", "domain", "variation", "name", "race"])
        frames.append(pd.read_parquet(answers).merge(labels, on="prompt_id", validate="many_to_one"))
    return pd.concat(frames, ignore_index=True)


def variation_smds(
    answers: pd.DataFrame, groups: Sequence[str], winsorize: Sequence[float] | None = None
) -> pd.DataFrame:
    """Each variation's SMD (domain, variation, smd) exactly as bias_table computes it, without its intervals:
    it depends on no seed, so what reads only the signs (masks ranked against the bias) does not rerun when
    the bootstrap is reseeded."""
    ddof = ddof_of(answers)
    answers = winsorized(weighted_answers(answers), winsorize)
    rows = []
    for domain, frame in answers.groupby("domain", sort=False):
        names = group_names(frame, groups)
        for variation, part in frame.groupby("variation", sort=False):
            rows.append(
                {"domain": domain, "variation": variation, "smd": _point(part, names, groups, ddof)[3]}
            )
    return pd.DataFrame(rows, columns=["domain", "variation", "smd"])


def bias_table(
    answers: pd.DataFrame,
    groups: Sequence[str],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    permutations: int = 2000,
    winsorize: Sequence[float] | None = None,
) -> pd.DataFrame:
    """One row per (domain, variation) and one per domain (mean |SMD| over its variations).

    `answers` has one row per answer with domain, variation, name, race, value, valid, reason.
    SMD = (mean of groups[0] - mean of groups[1]) / pooled SD over all valid answers of the variation;
    CIs resample names within each group (the same resampled names for every variation of a domain), and
    `measurable` says whether the signed interval excludes 0. |SMD| (and the domain's mean |SMD|) is tested
    against a permutation null, race labels permuted over the names (`abs_smd_p`): a percentile interval of
    |SMD| never contains 0 and is not shown. Invalid answers are excluded and counted per group; Mann-Whitney
    compares the names' mean answers. Rows of the exact readout count as their distributions (see
    weighted_answers: masses for counts, the mixture's variance); `winsorize` clips each variation first.
    """
    reference, focal = groups
    ddof = ddof_of(answers)
    raw = answers
    answers = winsorized(weighted_answers(answers), winsorize)
    rows = []
    for domain, frame in answers.groupby("domain", sort=False):
        raw_domain = raw[raw["domain"] == domain]
        names = group_names(frame, groups)
        draws = name_draws(names, groups, resamples, seed)
        sums = []
        for variation, part in frame.groupby("variation", sort=False):
            bias = _variation_bias(part, names, groups, draws, ddof, confidence)
            sums.append(bias.sums)
            if not np.isfinite(bias.columns["smd"]):
                log.warning("%s / %s: no SMD (valid answers: %g vs %g)", domain, variation, *bias.valid)
            rows.append(
                {
                    "domain": domain,
                    "variation": variation,
                    "level": "variation",
                    **_group_summary(part[part["race"] == reference], "ref", ddof),
                    **_group_summary(part[part["race"] == focal], "focal", ddof),
                    **bias.columns,
                    **readout_masses(raw_domain[raw_domain["variation"] == variation]),
                }
            )
        variation_rows = rows[-len(sums) :]
        labels = np.arange(len(names[reference]) + len(names[focal])) < len(names[reference])
        observed, permuted = permutation_abs_smd(np.stack(sums), labels, permutations, seed, ddof)
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
            **_group_summary(frame[frame["race"] == reference], "ref", ddof),
            **_group_summary(frame[frame["race"] == focal], "focal", ddof),
            "smd": np.nan,
            "smd_low": np.nan,
            "smd_high": np.nan,
            "measurable": bool(any(row["measurable"] for row in variation_rows)),
            "abs_smd": float(np.nanmean(np.abs(smds))) if np.isfinite(smds).any() else np.nan,
            "abs_smd_p": float(mean_p),
            "mwu_p": np.nan,
            **readout_masses(raw_domain),
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


def comparison_table(
    pruned: pd.DataFrame,
    base: pd.DataFrame,
    groups: Sequence[str],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    winsorize: Sequence[float] | None = None,
) -> pd.DataFrame:
    """The bias of one domain's answers under a mask next to the unpruned answers of the same prompts.

    One row per evaluated variation and one `domain` row (mean |SMD| over them). The relative reduction
    1 - |SMD_pruned| / |SMD_base| gets its CI from resamples of names drawn identically for both (paired),
    the draws bias_table uses, so the unpruned SMD here equals the baseline table's. Answers are weighted
    as in bias_table (distributions of the exact readout) and winsorised per variation when asked.
    """
    ddof = ddof_of(base)
    raw = pruned
    pruned = winsorized(weighted_answers(pruned), winsorize)
    base = winsorized(weighted_answers(base), winsorize)
    (domain,) = base["domain"].unique()
    names = group_names(base, groups)
    draws = name_draws(names, groups, resamples, seed)
    rows, boots, base_boots = [], [], []
    for variation, part in pruned.groupby("variation", sort=False):
        base_part = base[base["variation"] == variation]
        bias = _variation_bias(part, names, groups, draws, ddof, confidence)
        unpruned = _variation_bias(base_part, names, groups, draws, ddof, confidence)
        value, base_value = bias.columns["smd"], unpruned.columns["smd"]
        resampled, base_resampled = bias.resampled, unpruned.resampled
        boots.append(resampled)
        base_boots.append(base_resampled)
        valid, base_valid = part[part["valid"]], base_part[base_part["valid"]]
        reduction_low, reduction_high = percentile_interval(_reduction(resampled, base_resampled), confidence)
        rows.append(
            {
                "domain": domain,
                "variation": variation,
                "level": "variation",
                "n_answers": float(part["weight"].sum()),
                **{name: bias.columns[name] for name in ("smd", "smd_low", "smd_high", "abs_smd")},
                "base_smd": base_value,
                "base_abs_smd": unpruned.columns["abs_smd"],
                "base_measurable": unpruned.columns["measurable"],
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
                "mwu_p": bias.columns["mwu_p"],
                "invalid_rate": _invalid_rate(part),
                "base_invalid_rate": _invalid_rate(base_part),
                "inlier_ratio": inlier_ratio(
                    valid["value"].to_numpy(float),
                    base_valid["value"].to_numpy(float),
                    BAND,
                    valid["weight"].to_numpy(float),
                    base_valid["weight"].to_numpy(float),
                ),
                **readout_masses(raw[raw["variation"] == variation]),
            }
        )
    frame = pd.DataFrame(rows)
    with warnings.catch_warnings():  # no variation with an SMD: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        abs_smd, base_abs = np.nanmean(frame["abs_smd"]), np.nanmean(frame["base_abs_smd"])
    low, high = percentile_interval(_reduction(_mean_abs(boots), _mean_abs(base_boots)), confidence)
    change_low, change_high = percentile_interval(_mean_abs(boots) - _mean_abs(base_boots), confidence)
    evaluated = base[base["variation"].isin(frame["variation"])]
    inliers = frame["inlier_ratio"].notna()
    summary = {
        "domain": domain,
        "variation": None,
        "level": "domain",
        "n_answers": float(pruned["weight"].sum()),
        "abs_smd": abs_smd,
        "base_abs_smd": base_abs,
        "base_measurable": bool(frame["base_measurable"].any()),
        "abs_change": abs_smd - base_abs,
        "abs_change_low": change_low,
        "abs_change_high": change_high,
        "reduction": float(_reduction(abs_smd, base_abs)),
        "reduction_low": low,
        "reduction_high": high,
        "invalid_rate": _invalid_rate(pruned),
        "base_invalid_rate": _invalid_rate(evaluated),
        "inlier_ratio": float(
            np.average(frame.loc[inliers, "inlier_ratio"], weights=frame.loc[inliers, "n_answers"])
        )
        if inliers.any()
        else np.nan,
        **readout_masses(raw),
    }
    return pd.concat([frame, pd.DataFrame([summary])], ignore_index=True)
