"""Bias statistics as pure functions: pooled-SD SMD, name-resampling bootstrap, Mann-Whitney U (scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# A pooled SD this small relative to the means is rounding noise of sums of squares (e.g. every name giving
# the same answer, where resampled sums of squares cancel to ~1e-8 relative): the SMD is then undefined.
RELATIVE_SD_FLOOR = 1e-7


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float:
    """sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2)), sample variances (ddof=1)."""
    n_a, n_b = len(a), len(b)
    if n_a + n_b <= 2:
        return math.nan
    ss = ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
    return math.sqrt(ss / (n_a + n_b - 2))


def smd(reference: np.ndarray, focal: np.ndarray) -> float:
    """(mean_reference - mean_focal) / pooled SD; NaN when a group is empty or the SD is zero."""
    reference, focal = np.asarray(reference, float), np.asarray(focal, float)
    if len(reference) == 0 or len(focal) == 0:
        return math.nan
    sd = pooled_sd(reference, focal)
    if not sd > RELATIVE_SD_FLOOR * (abs(reference.mean()) + abs(focal.mean())):
        return math.nan
    return float((reference.mean() - focal.mean()) / sd)


def name_sums(per_name: Sequence[np.ndarray], weights: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """(count, sum, sum of squares) of each name's answers: enough to pool any resample of names. With
    `weights` (an answer's probability, for distribution readouts) they are weighted sums."""
    if weights is None:
        weights = [np.ones(len(v)) for v in per_name]
    return np.array(
        [
            [np.sum(w), np.sum(w * v), np.sum(w * np.square(v))]
            for v, w in zip(map(np.asarray, per_name), map(np.asarray, weights), strict=True)
        ],
        dtype=float,
    ).reshape(-1, 3)


def smd_from_sums(reference: np.ndarray, focal: np.ndarray, ddof: int = 1) -> np.ndarray:
    """SMD of pooled (count, sum, sumsq) triples; arrays of shape (..., 3). `ddof` 1: the sample variances
    of Cohen's d (counts of answers); 0: the variances of a mixture of distributions (counts are masses),
    what sampled answers estimate as their number grows."""
    n_r, s_r, q_r = np.moveaxis(reference, -1, 0)
    n_f, s_f, q_f = np.moveaxis(focal, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ss = (q_r - s_r**2 / n_r) + (q_f - s_f**2 / n_f)
        sd = np.sqrt(np.maximum(ss, 0) / (n_r + n_f - 2 * ddof))
        value = (s_r / n_r - s_f / n_f) / sd
        defined = (n_r > 0) & (n_f > 0) & (sd > RELATIVE_SD_FLOOR * (np.abs(s_r / n_r) + np.abs(s_f / n_f)))
    return np.where(defined, value, np.nan)


def bootstrap_indices(
    n_reference: int, n_focal: int, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Names drawn with replacement within each group: reference draws first, then focal, per resample."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, n_reference, (resamples, n_reference))
    return reference, rng.integers(0, n_focal, (resamples, n_focal))


def bootstrap_smd(
    reference: Sequence[np.ndarray],
    focal: Sequence[np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
    indices: tuple[np.ndarray, np.ndarray] | None = None,
    ddof: int = 1,
) -> np.ndarray:
    """SMD of each bootstrap resample; `reference`/`focal` hold one array of answers per name.

    Names (not answers) are resampled within each group: answers of one name are not independent, and
    resampling answers would understate the uncertainty.
    """
    return bootstrap_smd_of_sums(name_sums(reference), name_sums(focal), resamples, seed, indices, ddof)


def bootstrap_smd_of_sums(ref: np.ndarray, foc: np.ndarray, resamples=2000, seed=0, indices=None, ddof=1):
    """bootstrap_smd from per-name (count, sum, sumsq) triples (see name_sums)."""
    ref_index, foc_index = indices or bootstrap_indices(len(ref), len(foc), resamples, seed)
    return smd_from_sums(ref[ref_index].sum(1), foc[foc_index].sum(1), ddof)


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` interval of the finite values (NaN if there are none)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value, normal approximation with tie and continuity correction (scipy's);
    NaN when a group is empty (without scipy's small-sample warning). Every value tied gives 1."""
    from scipy.stats import mannwhitneyu  # here: scipy.stats costs every job that imports this module ~1 s

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return math.nan
    test = mannwhitneyu(a, b, use_continuity=True, alternative="two-sided", method="asymptotic")
    return float(test.pvalue)


def permutation_abs_smd(
    sums: np.ndarray, is_reference: np.ndarray, permutations: int = 2000, seed: int = 0, ddof: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """|SMD| of the observed labels and of `permutations` relabellings of the names.

    `sums`: (variations, names, 3) per-name (count, sum, sumsq) triples, names in the same order in every
    variation; `is_reference`: (names,) bool. Race labels are permuted over names, the same permutation for
    every variation of the set (a name keeps its answers across variations), so group sizes stay fixed.
    Returns observed (variations,) and permuted (permutations, variations)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(is_reference, bool)
    permuted = np.stack([rng.permutation(labels) for _ in range(permutations)]).astype(float)  # (P, names)
    total = sums.sum(1)  # (variations, 3)
    reference = np.einsum("pn,vnk->pvk", permuted, sums)
    observed_ref = np.einsum("n,vnk->vk", labels.astype(float), sums)
    observed = np.abs(smd_from_sums(observed_ref, total - observed_ref, ddof))
    return observed, np.abs(smd_from_sums(reference, total - reference, ddof))


def permutation_p(observed: np.ndarray, permuted: np.ndarray) -> np.ndarray:
    """One-sided p of a statistic against its permutation draws, (1 + #{draw >= observed}) / (1 + draws);
    NaN where the observed statistic is undefined. `permuted`: (draws, ...) matching `observed`."""
    with np.errstate(invalid="ignore"):
        hits = (np.nan_to_num(permuted, nan=-np.inf) >= observed - 1e-12 * np.abs(observed)).sum(0)
    return np.where(np.isfinite(observed), (1 + hits) / (1 + len(permuted)), np.nan)
