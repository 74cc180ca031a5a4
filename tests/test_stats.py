"""Each statistic against an independent computation: numpy, scipy, or a hand-worked example."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from biasprune.stats import (
    bootstrap_indices,
    bootstrap_smd,
    mann_whitney_p,
    percentile_interval,
    pooled_sd,
    smd,
)


def test_pooled_sd_and_smd_by_numpy():
    rng = np.random.default_rng(1)
    white, black = rng.normal(10, 2, 37), rng.normal(9, 3, 52)
    expected_sd = np.sqrt(
        ((len(white) - 1) * np.var(white, ddof=1) + (len(black) - 1) * np.var(black, ddof=1))
        / (len(white) + len(black) - 2)
    )
    assert pooled_sd(white, black) == pytest.approx(expected_sd, rel=1e-12)
    assert smd(white, black) == pytest.approx((white.mean() - black.mean()) / expected_sd, rel=1e-12)


def test_smd_by_hand():
    # means 3 and 1; squared deviations 2 + 2 = 4 over 3 + 3 - 2 = 4 degrees of freedom: s_p = 1.
    assert smd([2, 3, 4], [0, 1, 2]) == pytest.approx(2.0)
    assert math.isnan(smd([1, 1], [1, 1])) and math.isnan(smd([], [1, 2]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mann_whitney_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 8, 40).astype(float), rng.integers(1, 9, 55).astype(float)
    expected = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_mann_whitney_matches_scipy_without_ties():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 30), rng.normal(0.8, 1, 25)
    expected = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_by_hand_on_fixed_draws():
    # Two names per group. Draw 1 takes White names (0, 0) and Black names (1, 0); draw 2 takes (1, 1), (0, 0).
    white = [np.array([1.0, 3.0]), np.array([5.0, 7.0])]
    black = [np.array([0.0, 2.0]), np.array([2.0, 4.0])]
    draws = (np.array([[0, 0], [1, 1]]), np.array([[1, 0], [0, 0]]))
    values = bootstrap_smd(white, black, indices=draws)
    # Draw 1: White [1,3,1,3] mean 2, SS 4; Black [2,4,0,2] mean 2, SS 8 -> SMD 0.
    # Draw 2: White [5,7,5,7] mean 6, SS 4; Black [0,2,0,2] mean 1, SS 4 -> s_p = sqrt(8/6), SMD 5/s_p.
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert values[1] == pytest.approx(5 / math.sqrt(8 / 6))


def test_bootstrap_is_seeded_and_draws_reference_names_first():
    first_white, first_black = bootstrap_indices(3, 4, 5, seed=11)
    rng = np.random.default_rng(11)
    assert (first_white == rng.integers(0, 3, (5, 3))).all() and (
        first_black == rng.integers(0, 4, (5, 4))
    ).all()
    rng = np.random.default_rng(5)
    white = [rng.normal(1, 1, 6) for _ in range(8)]
    black = [rng.normal(0, 1, 6) for _ in range(8)]
    once = bootstrap_smd(white, black, resamples=300, seed=3)
    assert (once == bootstrap_smd(white, black, resamples=300, seed=3)).all()
    low, high = percentile_interval(once)
    assert low < smd(np.concatenate(white), np.concatenate(black)) < high


def test_identical_names_give_a_zero_width_interval():
    # Every name of a group answers the same multiset: any resample of names pools to the same data.
    white = [np.array([4.0, 6.0])] * 5
    black = [np.array([3.0, 5.0])] * 4
    values = bootstrap_smd(white, black, resamples=200, seed=0)
    point = smd(np.concatenate(white), np.concatenate(black))
    assert point == pytest.approx(1 / math.sqrt(2 * 5 + 2 * 4) * math.sqrt(16))  # s_p = sqrt(18/16)
    assert percentile_interval(values) == pytest.approx((point, point))


def test_percentile_interval_by_numpy_and_with_nans():
    values = np.arange(101, dtype=float)
    assert percentile_interval(values, 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.array([np.nan, 1.0, 3.0]), 0.5) == pytest.approx((1.5, 2.5))
    assert all(math.isnan(x) for x in percentile_interval(np.array([np.nan])))


def test_identical_large_answers_give_no_smd_in_any_resample():
    # Every name repeats one large value: the pooled SD is zero, and rounding in sums of squares must not
    # turn it into a huge SMD.
    white = [np.full(7, 97938.975)] * 4
    black = [np.full(7, 42715.615)] * 4
    assert math.isnan(smd(np.concatenate(white), np.concatenate(black)))
    assert np.isnan(bootstrap_smd(white, black, resamples=200, seed=0)).all()


def test_permutation_p_of_abs_smd_matches_the_exact_enumeration():
    from itertools import combinations

    from biasprune.stats import name_sums, permutation_abs_smd, permutation_p, smd

    rng = np.random.default_rng(3)
    per_name = [rng.normal(0.4 * (i < 4), 1, 3) for i in range(8)]  # names 0-3 reference, 4-7 focal
    labels = np.arange(8) < 4
    sums = name_sums(per_name)[None]
    observed, permuted = permutation_abs_smd(sums, labels, permutations=4000, seed=1)
    values = np.array(per_name)
    assert observed[0] == pytest.approx(abs(smd(values[:4].ravel(), values[4:].ravel())))
    exact = [
        abs(smd(values[list(chosen)].ravel(), values[[i for i in range(8) if i not in chosen]].ravel()))
        for chosen in combinations(range(8), 4)
    ]
    expected = np.mean(np.array(exact) >= observed[0] - 1e-12)
    assert permutation_p(observed, permuted)[0] == pytest.approx(expected, abs=0.02)
