"""The findings on synthetic studies with a known truth: each claim can hold, fail and be inconclusive, and in
a null world (race labels assigned to names at random) no claim says "holds" more often than alpha."""

import numpy as np
import pandas as pd
import pytest

from biasprune.findings import ANOMALY_MARGIN, FAILS, HOLDS, UNKNOWN, findings
from biasprune.metrics import BAND

GROUPS = ("White", "Black")
METRICS = {"bootstrap": 400, "confidence": 0.95, "seed": 0}
DOMAINS = {"a": ["x", "y", "z"], "b": ["u", "v", "w"]}
UNITS = {("weights", "wanda"): "tau=0.15,0.15;select=focal", ("heads", "name_attention"): "share=0.039"}
CONTROLS = [("random", 0), ("matched", 0), ("matched", 1)]


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


def study(rng, names=16, samples=3, gap=0.0, effect=None, shuffle=False, noise=0.3, vacuous=(), units=UNITS):
    """Per-name summaries and a conditions table of one synthetic study.

    Each name has a latent answer level (SD 1) per variation; White names answer `gap` higher (in SD units)
    unless `shuffle` assigns race labels at random (a null world). `effect(unit, level, control)` is the share
    of the gap a mask removes (0: none); every mask and control also moves each name's answers by a
    race-blind perturbation of SD `noise` (pruning changes answers, not only the gap). Conditions in `vacuous`
    prune nothing (their answers are the unpruned ones). `units` maps (unit, method) to its setting."""
    effect = effect or (lambda unit, level, control: 0.0)
    races = np.array(["White"] * (names // 2) + ["Black"] * (names // 2))
    labels = rng.permutation(races) if shuffle else races
    rows, conditions = [], []
    base_values = {}
    for d, variations in DOMAINS.items():
        for v in variations:
            level = rng.normal(0, 1, names) + gap * (races == "White")
            base_values[d, v] = level[:, None] + rng.normal(0, 0.5, (names, samples))
    bands = {key: np.percentile(values, BAND) for key, values in base_values.items()}

    def add(series, values, d, v):
        low, high = bands[d, v]
        for i in range(names):
            rows.append(
                series
                | {
                    "domain": d,
                    "variation": v,
                    "name": f"{d}{i}",
                    "race": labels[i],
                    "n_answers": samples,
                    "n_valid": samples,
                    "total": values[i].sum(),
                    "total_sq": (values[i] ** 2).sum(),
                    "n_inlier": int(((values[i] >= low) & (values[i] <= high)).sum()),
                }
            )

    blank = dict.fromkeys(["unit", "method", "scope", "condition", "setting"], "")
    for (d, v), values in base_values.items():
        add(blank | {"control": "base", "seed": -1, "in_sample": True}, values, d, v)
    for (unit, method), setting in units.items():
        for scope, condition, d, v, in_sample in cells():
            empty = condition in vacuous
            for control, seed in [("pruned", -1)] + ([] if empty else CONTROLS):
                keys = {"unit": unit, "method": method, "scope": scope, "condition": condition}
                keys |= {"setting": setting, "control": control, "seed": seed, "in_sample": in_sample}
                removed = 0.0 if empty else effect(unit, level_of(scope, in_sample), control)
                values = base_values[d, v] - removed * gap * (races == "White")[:, None]
                if not empty:
                    values = values + rng.normal(0, noise, (names, 1))
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
        claim = table[table["claim"] == 1]
        assert set(claim["verdict"]) == {UNKNOWN}
        anomaly = claim[claim["contrast"].str.startswith("anomalous")]
        # The unpruned answers lie inside their own 5-95% band less than 90% of the time at these n
        # (0.875 at n = 32), but against itself the rise is exactly 0: the anomaly part passes.
        assert (anomaly["estimate"] == 0).all() and (anomaly["high"] <= ANOMALY_MARGIN).all()


def test_a_large_rise_in_anomalous_answers_makes_claim_1_fail():
    def shifted(unit, level, control):
        return 1.0 if control == "pruned" else 0.0

    conditions, names = study(np.random.default_rng(1), gap=1.5, effect=shifted, noise=0.0)
    pruned = names["control"] == "pruned"
    names.loc[pruned, "n_inlier"] = 0  # every pruned answer outside the unpruned band
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
    assert rows.loc[False, "verdict"] == FAILS  # its own verdict in context, where it is worse too


def test_claim_5_without_a_paper_method_at_the_held_out_level_is_inconclusive():
    def direction_wins(unit, level, control):
        return {"directions": 0.9, "weights": 0.3, "heads": 0.1}[unit] if control == "pruned" else 0.0

    conditions, names = study(np.random.default_rng(6), gap=3.0, effect=direction_wins, units=WITH_DIRECTIONS)
    conditions = conditions[(conditions["unit"] == "directions") | (conditions["scope"] != "cross")]
    rows = claim_5(findings(conditions, names, GROUPS, METRICS))
    held_out = rows.loc[True]
    assert held_out["verdict"] == UNKNOWN and np.isnan(held_out["estimate"])
    assert held_out["evidence"] == "the run lacks a paper method at this level"
    assert rows.loc[False, "verdict"] == HOLDS  # in context both paper methods are there


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


def test_undefined_smds_are_inconclusive():
    conditions, names = study(np.random.default_rng(2), gap=1.5, effect=removes({"in": 1.0}))
    names.loc[names["control"] != "base", ["total", "total_sq"]] = np.nan
    table = findings(conditions, names.fillna({"total": 0.0}), GROUPS, METRICS)
    assert set(table["verdict"]) <= {UNKNOWN, "secondary"}


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
    rows = table[(table["claim"] == 1) & table["contrast"].str.startswith("reduction minus")]
    got = dict(zip(zip(rows["units"], rows["setting"], strict=True), rows["verdict"], strict=True))
    assert got["heads/name_attention", "share=0.039"] == HOLDS
    assert got["heads/name_attention", "share=0.1"] != HOLDS


def test_null_world_holds_at_most_alpha():
    """Race labels assigned at random: no true gap, masks and controls perturb answers race-blindly."""
    studies, verdicts_seen = 200, []
    rng = np.random.default_rng(11)
    for _ in range(studies):
        conditions, names = study(rng, gap=1.0, shuffle=True, noise=0.5, effect=removes({}))
        table = findings(conditions, names, GROUPS, {**METRICS, "bootstrap": 300})
        rows = table[table["primary"]].drop_duplicates(["claim", "units", "setting"])
        verdicts_seen.append(rows[["claim", "verdict"]])
    seen = pd.concat(verdicts_seen)
    rate = seen.assign(holds=seen["verdict"] == HOLDS).groupby("claim")["holds"].agg(["mean", "size"])
    assert set(rate.index) == {1, 2, 3, 4}
    # alpha = 0.05 plus two Monte Carlo standard errors of a rate of 0.05 over this many verdicts
    tolerance = 0.05 + 2 * np.sqrt(0.05 * 0.95 / rate["size"])
    print(rate)
    assert (rate["mean"] <= tolerance).all(), rate
