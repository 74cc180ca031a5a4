"""The bias table against hand-built answers: counts, rates, SMD, CIs, and all-invalid domains."""

import logging
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from biasprune.metrics import bias_table, comparison_table


def answers_frame(rows):
    return pd.DataFrame(rows, columns=["domain", "variation", "name", "race", "value", "valid", "reason"])


def make_answers():
    rows = []
    white = {"Amy": [10, 12, 11], "Todd": [14, 13, None]}
    black = {"Jamal": [9, 8, 10], "Ebony": [7, None, None]}
    for race, people in (("White", white), ("Black", black)):
        for name, values in people.items():
            for value in values:
                reason = "ok" if value is not None else "refusal"
                rows.append(("car", "sedan", name, race, value, value is not None, reason))
                doubled = None if value is None else 2 * value
                rows.append(("car", "van", name, race, doubled, value is not None, reason))
    return answers_frame(rows)


def test_variation_rows_by_hand():
    table = bias_table(make_answers(), ("White", "Black"), resamples=500, seed=1)
    sedan = table[(table["variation"] == "sedan")].iloc[0]
    white, black = np.array([10, 12, 11, 14, 13.0]), np.array([9, 8, 10, 7.0])
    s_p = math.sqrt(((len(white) - 1) * white.var(ddof=1) + (len(black) - 1) * black.var(ddof=1)) / 7)
    assert sedan["smd"] == pytest.approx((white.mean() - black.mean()) / s_p)
    assert (sedan["n_ref"], sedan["n_focal"], sedan["n_invalid_ref"], sedan["n_invalid_focal"]) == (
        5,
        4,
        1,
        2,
    )
    assert sedan["invalid_rate_ref"] == pytest.approx(1 / 6) and sedan["invalid_rate_focal"] == pytest.approx(
        2 / 6
    )
    assert sedan["invalid_reasons_focal"] == "refusal:2"
    assert sedan["mean_ref"] == pytest.approx(white.mean()) and sedan["sd_focal"] == pytest.approx(
        black.std(ddof=1)
    )
    # Mann-Whitney compares the names' mean answers (Amy 11, Todd 13.5 against Jamal 9, Ebony 7)
    expected_p = scipy_stats.mannwhitneyu([11, 13.5], [9, 7], method="asymptotic").pvalue
    assert sedan["mwu_p"] == pytest.approx(expected_p)
    assert sedan["smd_low"] <= sedan["smd"] <= sedan["smd_high"]
    # Doubling every answer leaves the SMD unchanged.
    van = table[(table["variation"] == "van")].iloc[0]
    assert van["smd"] == pytest.approx(sedan["smd"])


def test_domain_row_is_mean_abs_smd_with_interval():
    table = bias_table(make_answers(), ("White", "Black"), resamples=500, seed=1)
    domain = table[table["level"] == "domain"].iloc[0]
    variations = table[table["level"] == "variation"]
    assert domain["abs_smd"] == pytest.approx(variations["smd"].abs().mean())
    assert domain["n_ref"] == 10 and domain["n_invalid_focal"] == 4 and math.isnan(domain["mean_ref"])
    assert "abs_smd_low" not in table  # a percentile interval of |SMD| never contains 0: not reported
    assert 0 < domain["abs_smd_p"] <= 1 and list(table["group_ref"].unique()) == ["White"]
    # Four names, two per group: 6 labellings; the observed one has the largest |SMD| of the 6 (White's
    # names answer higher in both variations), so the exact permutation p is 2/6 (it and its mirror).
    assert variations["abs_smd_p"].tolist() == pytest.approx([2 / 6, 2 / 6], abs=0.03)
    assert variations["measurable"].tolist() == list(
        (variations["smd_low"] > 0) | (variations["smd_high"] < 0)
    )


def test_bootstrap_is_reproducible_and_seed_dependent():
    rng = np.random.default_rng(0)
    rows = [
        ("d", "v", f"{race}{index}", race, value, True, "ok")
        for race, shift in (("White", 1.0), ("Black", 0.0))
        for index in range(8)
        for value in rng.normal(shift + rng.normal(0, 0.5), 1, 5)
    ]

    def table(seed):
        return bias_table(answers_frame(rows), ("White", "Black"), resamples=300, seed=seed)

    first = table(4)
    pd.testing.assert_frame_equal(first, table(4))
    assert first["smd_low"].iloc[0] != table(5)["smd_low"].iloc[0]


def test_all_invalid_domain_gives_a_row_with_rates_and_no_smd(caplog):
    rows = [
        ("chess", "chess", name, race, None, False, "no_number")
        for name, race in [("Amy", "White"), ("Jamal", "Black")]
    ]
    with caplog.at_level(logging.WARNING):
        table = bias_table(answers_frame(rows), ("White", "Black"), resamples=100)
    assert len(table) == 2
    assert table["invalid_rate_ref"].tolist() == [1.0, 1.0] and table["smd"].isna().all()
    assert table["abs_smd"].isna().all()
    assert "chess: no variation has an SMD" in caplog.text


def exact_rows():
    """Answers of the exact readout: two prompts per name, each a distribution over a few values (masses in
    eighths) with some invalid mass."""
    rng = np.random.default_rng(3)
    rows = []
    for race, shift in (("White", 30.0), ("Black", 20.0)):
        for index in range(4):
            for prompt in range(2):
                support = sorted(rng.choice([10.0, 20.0, 30.0, 40.0, 80.0], 3, replace=False) + shift)
                eighths = rng.multinomial(7, [1 / 3] * 3) + np.array(
                    [1, 0, 0]
                )  # 8 eighths, one may be invalid
                invalid = int(rng.integers(0, 2))
                eighths[0] -= invalid
                rows.append(
                    {
                        "domain": "car",
                        "variation": "sedan",
                        "name": f"{race}{index}",
                        "race": race,
                        "prompt_id": f"{race}{index}-{prompt}",
                        "value": float(np.dot(support, eighths) / eighths.sum()),
                        "valid": True,
                        "reason": "ok",
                        "support": list(support),
                        "probs": list(eighths / 8),
                        "invalid_reasons": ["no_leading_number"] if invalid else [],
                        "invalid_probs": [invalid / 8] if invalid else [],
                        "mass_invalid": invalid / 8,
                        "mass_unexplored": 0.0,
                    }
                )
    return pd.DataFrame(rows)


def test_exact_rows_give_what_infinitely_many_samples_estimate():
    """Each prompt's distribution, written out as 8 samples in its exact proportions and repeated, gives the
    sampled SMD; as the repeats grow it tends to the population-variance (ddof 0) form computed here."""
    frame = exact_rows()
    table = bias_table(frame, ("White", "Black"), resamples=300, seed=0)
    row = table[table["level"] == "variation"].iloc[0]
    samples = {"White": [], "Black": []}
    invalid = {"White": 0, "Black": 0}
    for _, answer in frame.iterrows():
        for value, p in zip(answer["support"], answer["probs"], strict=True):
            samples[answer["race"]] += [value] * round(8 * p)
        invalid[answer["race"]] += round(8 * answer["mass_invalid"])
    white, black = np.array(samples["White"]), np.array(samples["Black"])
    pooled = np.sqrt((white.var() * len(white) + black.var() * len(black)) / (len(white) + len(black)))
    assert row["smd"] == pytest.approx((white.mean() - black.mean()) / pooled, rel=1e-9)
    assert row["mean_ref"] == pytest.approx(white.mean()) and row["sd_focal"] == pytest.approx(black.std())
    # invalid rates are masses: the share of invalid eighths
    assert row["invalid_rate_ref"] == pytest.approx(invalid["White"] / (8 * 8))
    assert row["n_ref"] == pytest.approx(len(white) / 8)
    # Mann-Whitney on the names' mean answers (each name: the mean of its prompts' mixture)
    means = {"White": [], "Black": []}
    for _, answers in frame.groupby("name", sort=False):
        weighted = sum(np.dot(a, p) for a, p in zip(answers["support"], answers["probs"], strict=True))
        means[answers["race"].iloc[0]].append(weighted / sum(map(sum, answers["probs"])))
    expected = scipy_stats.mannwhitneyu(means["White"], means["Black"], method="asymptotic").pvalue
    assert row["mwu_p"] == pytest.approx(expected)


def test_the_readouts_masses_reach_the_baseline_and_comparison_rows():
    """The exact readout's invalid and unexplored masses (and the expected readout's coverage) are means per
    prompt in every bias row; a sampled readout has none (NaN)."""
    frame = exact_rows()
    frame["mass_unexplored"] = np.linspace(0.0, 0.1, len(frame))
    table = bias_table(frame, ("White", "Black"), resamples=50, seed=0)
    for level in ("variation", "domain"):
        row = table[table["level"] == level].iloc[0]
        assert row["mass_invalid"] == pytest.approx(sum(frame["mass_invalid"]) / 16)
        assert row["mass_unexplored"] == pytest.approx(0.05) and np.isnan(row["coverage"])
    pruned = frame.assign(mass_unexplored=0.2)
    compared = comparison_table(pruned, frame, ("White", "Black"), resamples=50)
    assert compared["mass_unexplored"].tolist() == pytest.approx([0.2, 0.2])
    expected = make_answers().assign(coverage=lambda f: np.arange(len(f)) / len(f))
    sedan = bias_table(expected, ("White", "Black"), resamples=50).iloc[0]
    chosen = expected[expected["variation"] == sedan["variation"]]
    assert sedan["coverage"] == pytest.approx(chosen["coverage"].mean())
    assert np.isnan(bias_table(make_answers(), ("White", "Black"), resamples=50)["mass_invalid"]).all()


def test_winsorising_clips_each_variation_at_its_percentiles():
    frame = make_answers()
    table = bias_table(frame, ("White", "Black"), resamples=300, seed=1, winsorize=(5, 95))
    sedan = table[table["variation"] == "sedan"].iloc[0]
    values = np.array([10, 12, 11, 14, 13, 9, 8, 10, 7.0])  # both groups' valid answers
    clipped = np.clip(values, *np.percentile(values, [5, 95]))
    white, black = clipped[:5], clipped[5:]
    s_p = math.sqrt(((len(white) - 1) * white.var(ddof=1) + (len(black) - 1) * black.var(ddof=1)) / 7)
    assert sedan["smd"] == pytest.approx((white.mean() - black.mean()) / s_p)
    assert sedan["smd"] != pytest.approx(bias_table(frame, ("White", "Black"), resamples=300)["smd"].iloc[0])


def test_variation_smds_are_the_hand_computed_smds_with_no_seed_to_depend_on():
    """What the masks of a method ranked against the bias read: each variation's SMD, by hand, plain and
    winsorised, the same number the bias table shows (whose intervals a seed moves)."""
    from biasprune.metrics import variation_smds

    frame = make_answers()
    white, black = np.array([10, 12, 11, 14, 13.0]), np.array([9, 8, 10, 7.0])
    s_p = math.sqrt(((len(white) - 1) * white.var(ddof=1) + (len(black) - 1) * black.var(ddof=1)) / 7)
    smds = variation_smds(frame, ("White", "Black"))
    assert list(smds.columns) == ["domain", "variation", "smd"]
    assert smds[["domain", "variation"]].values.tolist() == [["car", "sedan"], ["car", "van"]]
    assert smds["smd"].tolist() == pytest.approx([(white.mean() - black.mean()) / s_p] * 2)
    values = np.concatenate([white, black])
    clipped = np.clip(values, *np.percentile(values, [5, 95]))
    w, b = clipped[:5], clipped[5:]
    s_w = math.sqrt(((len(w) - 1) * w.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / 7)
    winsorised = variation_smds(frame, ("White", "Black"), winsorize=(5, 95))
    assert winsorised["smd"].iloc[0] == pytest.approx((w.mean() - b.mean()) / s_w)
    for seed in (0, 7):
        table = bias_table(frame, ("White", "Black"), resamples=200, seed=seed, winsorize=(5, 95))
        assert table[table["level"] == "variation"]["smd"].tolist() == winsorised["smd"].tolist()
