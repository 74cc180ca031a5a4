"""The findings on synthetic studies with a known truth: each claim can hold, fail and be inconclusive, and in
a null world (race labels assigned to names at random) no claim says "holds" more often than alpha."""

import numpy as np
import pandas as pd
import pytest

from biasprune.draws import bootstrap_p, holm, seed_weights
from biasprune.findings import ANOMALY_MARGIN, FAILS, HOLDS, UNKNOWN, findings
from biasprune.folds import assign_folds
from biasprune.metrics import bias_table, name_draws
from biasprune.stats import bootstrap_indices
from biasprune.weighting import BAND, FENCE

GROUPS = ("White", "Black")
METRICS = {"bootstrap": 400, "confidence": 0.95, "seed": 0}
DOMAINS = {"a": ["x", "y", "z"], "b": ["u", "v", "w"]}
UNITS = {("weights", "wanda"): "tau=0.15,0.15;select=focal", ("heads", "name_attention"): "share=0.039"}
CONTROLS = [("random", 0), ("random", 1), ("matched", 0), ("matched", 1)]


def cells():
    """(scope, condition, domain, variation, in_sample) of every evaluated cell of the synthetic design."""
    out = []
    for d, variations in DOMAINS.items():
        for v in variations:
            out += [("variation", f"{d}/{v}", d, v, True), ("loo", f"{d}/-{v}", d, v, False)]
            out += [("domain", e, d, v, e == d) for e in DOMAINS]
            out.append(("cross", f"-{d}", d, v, False))
    return out


LEVEL = {"variation": "variation", "loo": "loo"}


def level_of(scope, in_sample):
    return {"variation": "variation", "loo": "loo", "cross": "other"}.get(
        scope, "in" if in_sample else "other"
    )


def study(
    rng,
    names=16,
    samples=3,
    gap=0.0,
    effect=None,
    shuffle=False,
    noise=0.3,
    vacuous=(),
    units=UNITS,
    shared=0.0,
    seed_noise=0.0,
    seed_shift=0.0,
    controls=CONTROLS,
    move=0.0,
    collapse=False,
    components=None,
):
    """Per-name summaries and a conditions table of one synthetic study.

    The same names answer in every domain. Each name has a latent answer level per variation (SD 1, plus a
    part of SD `shared` common to all its variations and domains); White names answer `gap` higher (in SD
    units) unless `shuffle` assigns race labels at random (a null world). `effect(unit, level, control)` is
    the share of the gap a mask removes (0: none); every mask and control also moves each name's answers by a
    race-blind perturbation of SD `noise` (pruning changes answers, not only the gap), and each mask and each
    control seed by one of SD `seed_noise` per name that is the same in every cell (what that draw of
    components does to that name); each control seed also removes a share of the gap that differs from
    `effect`'s by one draw of SD `seed_shift` (the same in every cell). Conditions in `vacuous` prune nothing
    (their answers are the unpruned ones). `units` maps (unit, method) to its setting. Masks (not controls)
    move every answer by `move` widths of the unpruned 5-95% band, or with `collapse` answer one value.

    `components` (a dict: count, k, sd, noise, folds) replaces `effect` by masks *selected from the data*:
    each name has its own effect (SD `sd`) through each of `count` components, the same in every cell and
    unrelated to race; a mask removes the effects of the `k` components whose observed score (White minus Black
    mean effect over the selecting names, plus measurement noise `noise` per condition) is largest, and a
    control seed `k` components drawn at random. With `folds` 1 the names that select a mask evaluate it (the
    paper's design); with 2, each name is read under the mask selected without its fold (folds.assign_folds)."""
    effect = effect or (lambda unit, level, control: 0.0)
    races = np.array(["White"] * (names // 2) + ["Black"] * (names // 2))
    labels = rng.permutation(races) if shuffle else races
    common = rng.normal(0, shared, names) if shared else np.zeros(names)
    rows, conditions = [], []
    base_values = {}
    if components:
        effects = rng.normal(0, components["sd"], (names, components["count"]))
        roster = [
            {"name": f"n{i}", "race": labels[i], "gender": "female" if i % 4 < 2 else "male"}
            for i in range(names)
        ]
        folds = assign_folds(roster, GROUPS, components["folds"], seed=0) or {"": []}
        index = {f"n{i}": i for i in range(names)}
        # per fold: the names that select its masks (all but the fold's) and those read under them
        plan = [
            (np.array([index[n] for n in index if n not in held]), np.array([index[n] for n in held]))
            if held
            else (np.arange(names), np.arange(names))
            for held in folds.values()
        ]

        def selected_removal(unit, condition):
            removed = np.zeros(names)
            for selecting, evaluated in plan:
                white = selecting[labels[selecting] == "White"]
                black = selecting[labels[selecting] == "Black"]
                score = effects[white].mean(0) - effects[black].mean(0)
                score = score + rng.normal(0, components["noise"], components["count"])
                chosen = np.argsort(-score)[: components["k"]]
                removed[evaluated] = effects[evaluated][:, chosen].sum(1)
            return removed

    for d, variations in DOMAINS.items():
        for v in variations:
            level = common + rng.normal(0, 1, names) + gap * (races == "White")
            base_values[d, v] = level[:, None] + rng.normal(0, 0.5, (names, samples))
    bands = {key: np.percentile(values, BAND) for key, values in base_values.items()}

    def add(series, values, d, v):
        low, high = bands[d, v]
        far = FENCE * (high - low)
        for i in range(names):
            rows.append(
                series
                | {
                    "domain": d,
                    "variation": v,
                    "name": f"n{i}",
                    "race": labels[i],
                    "n_answers": samples,
                    "n_valid": samples,
                    "total": values[i].sum(),
                    "total_sq": (values[i] ** 2).sum(),
                    "n_far": int(((values[i] < low - far) | (values[i] > high + far)).sum()),
                    "mass_valid": samples,
                    "mass_total": samples,
                }
            )

    blank = dict.fromkeys(["unit", "method", "scope", "condition", "setting"], "")
    for (d, v), values in base_values.items():
        add(blank | {"control": "base", "seed": -1, "in_sample": True}, values, d, v)
    for (unit, method), setting in units.items():
        draw = {key: rng.normal(0, seed_noise, (names, 1)) for key in [("pruned", -1), *controls]}
        shift = {key: rng.normal(0, seed_shift) if key[0] != "pruned" else 0.0 for key in draw}
        for scope, condition, d, v, in_sample in cells():
            empty = condition in vacuous
            for control, seed in [("pruned", -1)] + ([] if empty else controls):
                keys = {"unit": unit, "method": method, "scope": scope, "condition": condition}
                keys |= {"setting": setting, "control": control, "seed": seed, "in_sample": in_sample}
                removed = (
                    0.0 if empty else effect(unit, level_of(scope, in_sample), control) + shift[control, seed]
                )
                values = base_values[d, v] - removed * gap * (races == "White")[:, None]
                if components and not empty:
                    if control == "pruned":
                        taken = selected_removal(unit, condition)
                    else:
                        chosen = rng.choice(components["count"], components["k"], replace=False)
                        taken = effects[:, chosen].sum(1)
                    values = values - taken[:, None]
                if not empty:
                    values = values + rng.normal(0, noise, (names, 1)) + draw[control, seed]
                if not empty and control == "pruned":
                    values = values + move * np.subtract(*bands[d, v][::-1])
                    values = np.full_like(values, values.mean()) if collapse else values
                add(keys, values, d, v)
                conditions.append(
                    keys
                    | {"domain": d, "variation": v, "level": "variation", "vacuous": empty}
                    | {"share_pruned": 0.0 if empty else 0.03, "kl": 0.0 if empty else 0.1}
                )
    return pd.DataFrame(conditions), pd.DataFrame(rows)


def verdicts(table, claim):
    rows = table[(table["claim"] == claim) & table["primary"]]
    return dict(zip(rows["units"], rows["verdict"], strict=True))


def run(**world):
    conditions, names = study(np.random.default_rng(world.pop("seed", 0)), **world)
    return findings(conditions, names, GROUPS, METRICS)


def removes(share_by_level):
    """Masks remove `share_by_level[level]` of the gap; controls remove nothing."""
    return lambda unit, level, control: share_by_level.get(level, 0.0) if control == "pruned" else 0.0


def test_a_mask_that_removes_the_gap_exactly_holds_claim_1():
    table = run(gap=1.5, effect=removes({"in": 1.0}), noise=0.0)
    assert verdicts(table, 1) == {"weights/wanda": HOLDS, "heads/name_attention": HOLDS}
    excess = table[(table["claim"] == 1) & table["contrast"].str.startswith("reduction minus")]
    assert (excess["low"] > 0).all()
    assert all(
        note.startswith(f"{n} of 6 cells")
        for n, note in zip(excess["cells"], excess["cells_note"], strict=True)
    )


def pooled_smd(rows):
    """Cohen's d of White minus Black from per-name (count, sum, sumsq), by hand."""
    stats = {}
    for race in GROUPS:
        part = rows[rows["race"] == race]
        n, total, squares = part["n_valid"].sum(), part["total"].sum(), part["total_sq"].sum()
        stats[race] = (n, total / n, squares - total**2 / n)
    (n_w, m_w, ss_w), (n_b, m_b, ss_b) = stats["White"], stats["Black"]
    return (m_w - m_b) / np.sqrt((ss_w + ss_b) / (n_w + n_b - 2))


def test_the_pooled_reduction_is_one_minus_a_ratio_of_sums_by_hand():
    conditions, names = study(np.random.default_rng(4), gap=3.0, effect=removes({"in": 0.7}))
    table = findings(conditions, names, GROUPS, METRICS)
    row = table[(table["claim"] == 4) & (table["units"] == "weights/wanda")].iloc[0]
    pruned = names[
        (names["unit"] == "weights") & (names["scope"] == "domain") & (names["control"] == "pruned")
    ]
    inside = pruned[pruned["condition"] == pruned["domain"]]
    base = names[names["control"] == "base"]
    by_cell = ["domain", "variation"]
    sum_pruned = sum(abs(pooled_smd(part)) for _, part in inside.groupby(by_cell))
    sum_base = sum(abs(pooled_smd(part)) for _, part in base.groupby(by_cell))
    assert row["cells_note"].startswith("transfer: 12 of 12 cells; in context: 6 of 6 cells")
    assert f"in context {1 - sum_pruned / sum_base:+.2f}" in row["evidence"]


def test_pruned_answers_equal_to_the_base_never_hold_and_pass_their_own_anomaly_test():
    for names in (16, 24, 32, 64):
        table = run(names=names, samples=1, gap=1.5, noise=0.0, effect=None, seed=names)
        claim = table[(table["claim"] == 1) & table["primary"]]
        assert set(claim["verdict"]) == {UNKNOWN}
        anomaly = claim[claim["contrast"].str.startswith("anomalous")]
        # Against itself the rise is exactly 0: the anomaly part passes.
        assert (anomaly["estimate"] == 0).all() and (anomaly["high"] <= ANOMALY_MARGIN).all()


def test_a_large_rise_in_anomalous_answers_makes_claim_1_fail():
    def shifted(unit, level, control):
        return 1.0 if control == "pruned" else 0.0

    conditions, names = study(np.random.default_rng(1), gap=1.5, effect=shifted, noise=0.0)
    pruned = names["control"] == "pruned"
    names.loc[pruned, "n_far"] = names.loc[pruned, "n_valid"]  # every pruned answer far outside the band
    table = findings(conditions, names, GROUPS, METRICS)
    assert verdicts(table, 1) == {"weights/wanda": FAILS, "heads/name_attention": FAILS}


def test_claim_2_decides_on_the_papers_pair_in_both_directions():
    def weights_win(unit, level, control):
        return {"weights": 0.9, "heads": 0.1}[unit] if control == "pruned" else 0.0

    def heads_win(unit, level, control):
        return {"weights": 0.1, "heads": 0.9}[unit] if control == "pruned" else 0.0

    assert verdicts(run(gap=3.0, effect=weights_win), 2) == {"weights/wanda vs heads/name_attention": HOLDS}
    assert verdicts(run(gap=3.0, effect=heads_win), 2) == {"weights/wanda vs heads/name_attention": FAILS}


def test_claim_3_holds_for_falling_levels_and_fails_for_rising_ones():
    falling = removes({"variation": 0.9, "loo": 0.5, "other": 0.1})
    rising = removes({"variation": 0.1, "loo": 0.5, "other": 0.9})
    assert set(verdicts(run(gap=3.0, effect=falling), 3).values()) == {HOLDS}
    assert set(verdicts(run(gap=3.0, effect=rising), 3).values()) == {FAILS}


def test_claim_3_falling_with_shrinking_masks_is_inconclusive_and_levels_share_their_variations():
    falling = removes({"variation": 0.9, "loo": 0.5, "other": 0.1})
    conditions, names = study(np.random.default_rng(8), gap=3.0, effect=falling, noise=0.0)
    general = conditions["scope"].isin(["cross", "domain"])
    smaller = conditions.assign(share_pruned=np.where(general, 0.01, conditions["share_pruned"]))
    rows = findings(smaller, names, GROUPS, METRICS)
    rows = rows[(rows["claim"] == 3) & rows["primary"]]
    assert set(rows["verdict"]) == {UNKNOWN}
    assert rows["evidence"].str.contains("differ in size by more than 2x").all()
    # Held-out variation masks only on domain a's variations: every level pooled over those three.
    no_loo_in_b = conditions[~((conditions["scope"] == "loo") & (conditions["domain"] == "b"))]
    rows = findings(no_loo_in_b, names, GROUPS, METRICS)
    rows = rows[(rows["claim"] == 3) & rows["primary"]]
    assert rows["evidence"].str.startswith("on the 3 variations every level has").all()
    # 3 variation cells, 3 held-out, and the other-context cells of a's variations (b's domain mask, cross),
    # not b's 3 + 6 as well
    assert (rows["cells"] == 3 + 3 + 6).all()


def test_claim_4_needs_transfer_above_its_control_and_below_the_in_context_effect():
    partly = removes({"in": 0.9, "other": 0.4})
    nothing_general = removes({"in": 0.9, "other": 0.0})
    all_general = removes({"in": 0.5, "other": 0.9})
    assert set(verdicts(run(gap=3.0, effect=partly), 4).values()) == {HOLDS}
    assert set(verdicts(run(gap=3.0, effect=nothing_general, noise=0.0), 4).values()) == {UNKNOWN}
    assert set(verdicts(run(gap=3.0, effect=all_general), 4).values()) == {FAILS}


DIRECTION = "directions/leace"
WITH_DIRECTIONS = UNITS | {("directions", "leace"): "layers=all"}


def held_out_reduction(names, unit):
    """1 - sum|SMD_pruned| / sum|SMD_base| over the held-out (cross) cells of `unit`, all names, by hand."""
    pruned = names[(names["unit"] == unit) & (names["scope"] == "cross") & (names["control"] == "pruned")]
    base = names[names["control"] == "base"]
    by_cell = ["domain", "variation"]
    sum_pruned = sum(abs(pooled_smd(part)) for _, part in pruned.groupby(by_cell))
    sum_base = sum(abs(pooled_smd(part)) for _, part in base.groupby(by_cell))
    return 1 - sum_pruned / sum_base


def claim_5(table):
    return table[table["claim"] == 5].set_index("primary")


def test_claim_5_holds_when_the_held_out_direction_beats_the_best_paper_method():
    def direction_wins(unit, level, control):
        share = {"directions": 0.9, "weights": 0.4, "heads": 0.1}[unit] if level == "other" else 0.5
        return share if control == "pruned" else 0.0

    conditions, names = study(np.random.default_rng(3), gap=3.0, effect=direction_wins, units=WITH_DIRECTIONS)
    table = findings(conditions, names, GROUPS, METRICS)
    rows = claim_5(table)
    assert len(rows) == 2 and set(rows["units"]) == {DIRECTION}
    held_out = rows.loc[True]
    by_hand = {unit: held_out_reduction(names, unit) for unit in ("directions", "weights", "heads")}
    best = max(("weights", "heads"), key=by_hand.get)
    assert best == "weights"  # the design: wanda removes more of the gap than the heads
    best_label = {"weights": "weights/wanda", "heads": "heads/name_attention"}[best]
    assert held_out["verdict"] == HOLDS and held_out["low"] > 0
    assert held_out["contrast"] == f"{DIRECTION} minus {best_label} reduction (held out)"
    assert held_out["estimate"] == pytest.approx(by_hand["directions"] - by_hand[best], abs=1e-9)
    assert held_out["cells"] == 6
    assert f"best paper method {best_label}" in held_out["evidence"]
    assert f"heads/name_attention (share=0.039) {by_hand['heads']:+.2f}" in held_out["evidence"]
    # In context every method removes half the gap: the within-context row has no verdict of its own to win.
    assert rows.loc[False, "contrast"].endswith("reduction (in context)")
    assert rows.loc[False, "verdict"] != HOLDS


def test_claim_5_does_not_hold_when_the_held_out_direction_is_worse():
    def direction_loses(unit, level, control):
        share = {"directions": 0.1, "weights": 0.9, "heads": 0.8}[unit]
        return share if control == "pruned" else 0.0

    table = run(gap=3.0, effect=direction_loses, units=WITH_DIRECTIONS)
    rows = claim_5(table)
    assert rows.loc[True, "verdict"] == FAILS and rows.loc[True, "high"] < 0
    # in context, where it is worse too: a secondary row, below 0 after Holm's correction
    assert rows.loc[False, "verdict"] == "secondary" and rows.loc[False, "p_holm"] < 0.05
    assert rows.loc[False, "estimate"] < 0


def test_claim_5_without_a_paper_method_at_the_held_out_level_is_inconclusive():
    def direction_wins(unit, level, control):
        return {"directions": 0.9, "weights": 0.3, "heads": 0.1}[unit] if control == "pruned" else 0.0

    conditions, names = study(np.random.default_rng(6), gap=3.0, effect=direction_wins, units=WITH_DIRECTIONS)
    conditions = conditions[(conditions["unit"] == "directions") | (conditions["scope"] != "cross")]
    rows = claim_5(findings(conditions, names, GROUPS, METRICS))
    held_out = rows.loc[True]
    assert held_out["verdict"] == UNKNOWN and np.isnan(held_out["estimate"])
    assert held_out["evidence"] == "the run lacks a paper method at this level"
    # in context both paper methods are there: a secondary row, above 0 after Holm's correction
    assert rows.loc[False, "verdict"] == "secondary" and rows.loc[False, "p_holm"] < 0.05
    assert rows.loc[False, "estimate"] > 0


def test_a_run_without_directions_has_no_claim_5_rows():
    table = run(gap=3.0, effect=removes({"in": 0.9, "other": 0.4}))
    assert 5 not in set(table["claim"])
    assert set(table["claim"]) == {1, 2, 3, 4}


def test_no_measurable_gap_is_inconclusive_with_that_reason():
    conditions, names = study(np.random.default_rng(5), gap=1.5, effect=removes({"in": 1.0}))
    # Every baseline variation without a gap: the White names' unpruned answers copy the Black names'.
    flat = names.copy()
    for _, part in flat[flat["control"] == "base"].groupby(["domain", "variation"]):
        white, black = part.index[part["race"] == "White"], part.index[part["race"] == "Black"]
        flat.loc[white, ["total", "total_sq"]] = flat.loc[black, ["total", "total_sq"]].to_numpy()
    table = findings(conditions, flat, GROUPS, METRICS)
    claim = table[table["claim"] == 1]
    assert set(claim["verdict"]) == {UNKNOWN} and claim["evidence"].str.contains("no measurable").all()
    assert (claim["cells"] == 0).all()


def test_vacuous_masks_are_left_out_and_counted():
    table = run(gap=3.0, effect=removes({"in": 1.0}), noise=0.0, vacuous={"a"})
    row = table[(table["claim"] == 1) & table["contrast"].str.startswith("reduction minus")].iloc[0]
    assert row["cells"] == 3 and "3 left out: the mask prunes nothing" in row["cells_note"]
    assert row["verdict"] == HOLDS
    everything = run(gap=1.5, vacuous={"a", "b"})
    assert set(everything.loc[everything["claim"] == 1, "verdict"]) == {UNKNOWN}


def test_undefined_smds_never_become_numbers_and_answers_all_zero_are_a_collapse():
    conditions, names = study(np.random.default_rng(2), gap=1.5, effect=removes({"in": 1.0}))
    names.loc[names["control"] != "base", ["total", "total_sq"]] = 0.0  # every pruned answer 0: no SD
    table = findings(conditions, names, GROUPS, METRICS)
    contrasts = table[table["contrast"].str.startswith("reduction") | table["contrast"].str.contains("minus")]
    assert contrasts["estimate"].isna().all() and contrasts["p"].isna().all()
    # claim 1 still decides: answers collapsed to one value are anomalous, all of them
    assert set(verdicts(table, 1).values()) == {FAILS}
    rise = table[table["contrast"].str.startswith("anomalous") & table["primary"]]
    assert np.allclose(rise["estimate"], 1.0)
    assert set(table.loc[table["claim"] != 1, "verdict"]) <= {UNKNOWN, "secondary"}


def test_settings_get_their_own_verdicts():
    conditions, names = study(np.random.default_rng(0), gap=1.5, effect=removes({"in": 1.0}), noise=0.0)
    other = conditions.assign(setting="share=0.1")
    other_names = names[names["control"] != "base"].assign(setting="share=0.1")
    other = other[other["unit"] == "heads"]
    other_names = other_names[other_names["unit"] == "heads"]
    # Under the second head setting the masks do nothing: the answers are the unpruned ones.
    base = names[names["control"] == "base"].set_index(["domain", "variation", "name"])
    keyed = other_names.set_index(["domain", "variation", "name"])
    other_names = keyed.assign(total=base["total"], total_sq=base["total_sq"]).reset_index()
    table = findings(
        pd.concat([conditions, other]), pd.concat([names, other_names[names.columns]]), GROUPS, METRICS
    )
    rows = table[(table["claim"] == 1) & (table["contrast"] == "reduction minus random control")]
    rows = rows.set_index(["units", "setting"])
    assert rows.loc[("heads/name_attention", "share=0.039"), "verdict"] == HOLDS
    # the sweep's second setting: a secondary row of its own, whose masks do nothing
    second = rows.loc[("heads/name_attention", "share=0.1")]
    assert second["verdict"] == "secondary" and second["estimate"] == 0 and second["p_holm"] == 1


def holds_rates(studies: int, seed: int, **world) -> pd.DataFrame:
    """The share of primary verdicts that say "holds", per claim, over synthetic studies of one world."""
    rng, seen = np.random.default_rng(seed), []
    for _ in range(studies):
        conditions, names = study(rng, **world)
        table = findings(conditions, names, GROUPS, {**METRICS, "bootstrap": 300})
        rows = table[table["primary"]].drop_duplicates(["claim", "units", "setting"])
        seen.append(rows[["claim", "verdict"]])
    seen = pd.concat(seen)
    return seen.assign(holds=seen["verdict"] == HOLDS).groupby("claim")["holds"].agg(["mean", "size"])


def within_alpha(rate: pd.DataFrame) -> pd.Series:
    """Each claim's false "holds" at most the one-sided 2.5% plus two Monte Carlo standard errors."""
    return rate["mean"] <= 0.025 + 2 * np.sqrt(0.025 * 0.975 / rate["size"])


# Names shared by every domain with a name effect common to all their cells; every control seed removes its
# own share of the gap and moves each name its own way, the same in every cell: what real masks do.
SHARED_WORLD = {"shared": 1.0, "noise": 0.3, "seed_noise": 0.3, "units": WITH_DIRECTIONS}
FIVE_SEEDS = [("random", seed) for seed in range(5)]


def test_null_world_holds_at_most_alpha():
    """Race labels assigned at random: no true gap; masks and controls perturb answers race-blindly."""
    rate = holds_rates(
        150, 11, gap=1.0, shuffle=True, effect=removes({}), controls=FIVE_SEEDS, **SHARED_WORLD
    )
    print(rate)
    assert set(rate.index) == {1, 2, 3, 4, 5}
    assert within_alpha(rate).all(), rate


def average_control(unit, level, control):
    """Every mask removes what a control removes on average (30% of the gap): no claim is true."""
    return 0.3


def test_a_mask_no_better_than_its_controls_holds_at_most_alpha_and_one_fixed_seed_does_not(monkeypatch):
    """A real gap, masks exactly as good as the mean control, control seeds that differ: claims 1, 3 and 4
    hold at most alpha when five seeds are resampled in every draw; with the old design (one control seed,
    fixed, taken as a constant) claim 1 holds far more often than alpha: the test can fail."""
    world = {"gap": 1.5, "effect": average_control, "seed_shift": 0.15, **SHARED_WORLD}
    rate = holds_rates(150, 12, controls=FIVE_SEEDS, **world)
    print(rate)
    assert within_alpha(rate).all(), rate
    monkeypatch.setattr("biasprune.evidence.MIN_SEEDS", 1)  # read by Evidence.control_of
    old = holds_rates(150, 12, controls=[("random", 0)], **world)
    print(old)
    assert not within_alpha(old).loc[1], old


def test_one_name_draw_per_study_resamples_a_name_alike_in_every_domain():
    """Two domains with the same answers: the same intervals in both (each domain drew its own names before),
    so a name drawn twice counts twice in every cell a claim pools."""
    rng = np.random.default_rng(0)
    rows = []
    for domain in ("purchase", "hiring"):
        for i in range(8):
            race = "White" if i < 4 else "Black"
            rows += [
                {"domain": domain, "variation": "v", "name": f"n{i}", "race": race, "value": value}
                for value in np.random.default_rng(i).normal(i % 4 + (race == "White"), 1, 3)
            ]
    answers = pd.DataFrame(rows).assign(valid=True, reason="ok")
    table = bias_table(answers, GROUPS, resamples=300, seed=int(rng.integers(100)))
    a, b = (
        table[(table["domain"] == d) & (table["level"] == "variation")].iloc[0]
        for d in ("purchase", "hiring")
    )
    assert (a["smd_low"], a["smd_high"]) == (b["smd_low"], b["smd_high"])
    reference, focal = name_draws({"White": list("abcd"), "Black": list("efgh")}, GROUPS, 5, 3)
    expected = bootstrap_indices(4, 4, 5, 3)
    assert np.array_equal(reference, expected[0]) and np.array_equal(focal, expected[1])


def test_seed_weights_resample_the_seeds_and_draw_zero_is_their_mean():
    weights = seed_weights(5, 2001, 0)
    assert np.array_equal(weights[0], np.full(5, 0.2))
    assert np.allclose(weights.sum(axis=1), 1) and np.allclose((weights[1:] * 5) % 1, 0)
    # each seed's count in a draw is Binomial(5, 1/5): mean 1, variance 4/5
    counts = weights[1:] * 5
    assert counts.mean() == pytest.approx(1, abs=0.03) and counts.var() == pytest.approx(0.8, abs=0.05)


def test_holm_and_the_bootstrap_p_by_hand():
    # p sorted 0.01, 0.02, 0.04, 0.30: x4, x3, x2, x1 with the running maximum, NaN left out
    adjusted = holm(np.array([0.04, 0.01, np.nan, 0.30, 0.02]))
    assert np.allclose(adjusted, [0.08, 0.04, np.nan, 0.30, 0.06], equal_nan=True)
    draws = np.concatenate([[0.5], np.full(90, 1.0), np.full(9, -1.0)])  # point, then 99 draws
    assert bootstrap_p(draws) == pytest.approx(2 * 10 / 100)


def claim_1(table):
    return table[(table["claim"] == 1) & table["primary"]].set_index(["units", "contrast"])


def test_one_control_seed_cannot_decide_and_the_generic_control_is_preferred():
    one = run(gap=3.0, effect=removes({"in": 1.0}), noise=0.0, controls=[("matched", 0)])
    rows = claim_1(one)
    assert set(rows["verdict"]) == {UNKNOWN}
    assert (
        rows["evidence"]
        .str.endswith("no generic control on every cell; no random control on every cell")
        .all()
    )
    specificity = one[one["contrast"] == "reduction minus matched control (specificity)"]
    assert (
        specificity["evidence"]
        .str.fullmatch(r"the matched control has 1 seed \(its randomness needs 2\)")
        .all()
    )
    two = run(gap=3.0, effect=removes({"in": 1.0}), noise=0.0, controls=[("random", 0)])
    assert set(claim_1(two)["verdict"]) == {UNKNOWN}
    assert claim_1(two)["evidence"].str.contains("the random control has 1 seed").all()
    with_generic = run(gap=3.0, effect=removes({"in": 1.0}), noise=0.0, controls=[("generic", -1), *CONTROLS])
    excess = with_generic[with_generic["contrast"] == "reduction minus generic control"]
    assert len(excess) == 2 and set(excess["verdict"]) == {HOLDS}
    specificity = with_generic[with_generic["contrast"] == "reduction minus matched control (specificity)"]
    assert len(specificity) == 2 and set(specificity["verdict"]) == {"secondary"}
    assert (specificity["p_holm"] < 0.05).all()


def test_a_shift_within_the_unpruned_spread_is_no_anomaly_but_a_collapse_and_lost_mass_are():
    world = {"gap": 1.5, "effect": removes({"in": 1.0}), "noise": 0.0}
    assert set(verdicts(run(**world), 1).values()) == {HOLDS}
    # Every pruned answer moved by half the unpruned 5-95% band (an SD or so): no anomaly.
    table = run(**world, move=0.5)
    assert set(verdicts(table, 1).values()) == {HOLDS}
    rise = table[(table["claim"] == 1) & (table["contrast"].str.startswith("anomalous"))]
    assert (rise["high"] <= ANOMALY_MARGIN).all()
    # Moved by three band widths: anomalous.
    assert set(verdicts(run(**world, move=3.0), 1).values()) == {FAILS}
    # Every pruned answer the same value: a collapse, every answer anomalous.
    table = run(**world, collapse=True)
    assert set(verdicts(table, 1).values()) == {FAILS}
    rise = table[(table["claim"] == 1) & (table["contrast"].str.startswith("anomalous"))]
    assert (rise["estimate"] > 0.95).all()
    # Half the probability off the valid numbers (the expected readout's coverage): lost valid mass.
    conditions, names = study(np.random.default_rng(7), **world)
    pruned = names["control"] == "pruned"
    names["mass_valid"] = names["mass_valid"].astype(float)
    names.loc[pruned, "mass_valid"] = names.loc[pruned, "mass_total"] / 2
    table = findings(conditions, names, GROUPS, METRICS)
    assert set(verdicts(table, 1).values()) == {FAILS}
    loss = table[(table["claim"] == 1) & (table["contrast"].str.startswith("valid-mass"))]
    assert np.allclose(loss["estimate"], 0.5)


def test_one_primary_verdict_per_claim_and_unit_pair_and_holm_over_the_rest():
    conditions, names = study(np.random.default_rng(0), gap=1.5, effect=removes({"in": 1.0}), noise=0.0)
    second = conditions.assign(setting="share=0.1")
    second_names = names[names["control"] != "base"].assign(setting="share=0.1")
    table = findings(pd.concat([conditions, second]), pd.concat([names, second_names]), GROUPS, METRICS)
    primary = table[table["primary"]]
    assert set(primary.loc[primary["claim"] != 2, "setting"]) == set(UNITS.values())  # a sweep's first only
    secondary = table[~table["primary"]]
    assert (secondary["verdict"] == "secondary").all() and (secondary["setting"] == "share=0.1").any()
    rises = secondary["contrast"].str.contains("rise")
    assert rises.any() and secondary.loc[rises, "p_holm"].isna().all()  # margin tests, not in the family
    secondary = secondary[~rises]
    finite = secondary["p"].notna()
    assert np.allclose(secondary.loc[finite, "p_holm"], holm(secondary.loc[finite, "p"].to_numpy()))
    verdict_count = len(primary.drop_duplicates(["claim", "units", "setting"]))
    assert primary["multiplicity"].str.startswith(f"one of {verdict_count} primary verdicts").all()
    assert secondary["multiplicity"].str.contains(f"Holm over {finite.sum()} secondary contrasts").all()


def test_masks_selected_from_the_data_hold_at_most_alpha_when_cross_fitted_and_not_on_the_same_names():
    """Masks chosen by a noisy observed score among components that carry no race information (each name's
    effect through each component, the same in every cell): read on the names that selected them, they seem
    to remove the gap (selection optimism) and claim 1 "holds" far above alpha; cross-fitted over two folds
    of names, no claim holds above alpha. The test fails on the paper's same-names design."""
    world = {"gap": 1.0, "noise": 0.0, "shared": 1.0, "controls": FIVE_SEEDS, "units": WITH_DIRECTIONS}
    mechanism = {"count": 40, "k": 4, "sd": 0.25, "noise": 0.05}
    rate = holds_rates(120, 13, components=mechanism | {"folds": 2}, **world)
    print(rate)
    assert within_alpha(rate).all(), rate
    same = holds_rates(20, 13, components=mechanism | {"folds": 1}, **world)
    print(same)
    assert not within_alpha(same).loc[1] and same.loc[1, "mean"] > 0.2, same  # 40% at 40 studies


def test_a_run_without_a_level_says_claim_3_is_inconclusive():
    """The test config runs the variation and domain scopes only: no held-out-variation level (it crashed on
    an empty level before)."""
    conditions, names = study(np.random.default_rng(5), gap=2.0, effect=removes({"variation": 0.5}))
    table = findings(
        conditions[conditions["scope"] != "loo"], names[names["scope"] != "loo"], GROUPS, METRICS
    )
    rows = table[(table["claim"] == 3) & table["primary"]]
    assert len(rows) and (rows["verdict"] == UNKNOWN).all()
    assert (
        rows["evidence"].str.contains("held-out variation").all()
        or rows["cells_note"].str.contains("held-out variation").all()
    )
