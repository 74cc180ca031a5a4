"""The study's claims checked on this run: every verdict rests on a paired contrast with its interval.

Claims (study-facts, from the paper's abstract):
1. Pruning reduces the Black/White disparity without a large rise in anomalous outputs.
2. Neuron-level pruning reduces bias more than pruning attention heads (decided on the paper's pair,
   `weights/wanda` against `heads/name_attention`; other pairs are secondary rows).
3. Effectiveness falls as the strategy is made more general: variation > held-out variation > other context,
   each level measured by its excess over its deciding control.
4. Bias is partly general (transfer beats its control) and partly context-specific (transfer falls short
   of the in-context effect).
5. A linear direction found in other contexts removes more of the gap than the components found there
   (decided per `directions` method and setting on held-out (cross) cells: its pooled reduction minus that of
   the paper method, `weights/wanda` or `heads/name_attention`, with the larger point reduction on the shared
   cells; the same contrast in context is a second row that does not decide the claim).

How a number is made. A cell is one evaluated variation under one mask. Cells whose mask prunes nothing
(vacuous) and cells whose unpruned signed-SMD interval contains 0 (no measurable gap to reduce) are left
out and counted. Over the remaining cells of a claim the reduction is pooled, R = 1 - sum|SMD_pruned| /
sum|SMD_base|, never a mean of ratios. Every quantity is recomputed on the study's one name-bootstrap draw
(names resampled within each race group, the same names in every domain and table), so contrasts such as
"pruned minus its control" are differences draw by draw, and a seeded control's seeds are resampled inside
each draw; the interval is the percentile interval of that difference. Claims 1, 3 and 4 are decided against
the group-blind generic control, else a uniform control with at least MIN_SEEDS seeds; the matched control
is a secondary specificity row. A contrast supports its claim only when its interval excludes 0 in the
claimed direction, and contradicts it only when it excludes 0 the other way; anything else, and any empty or
undefined input, is `inconclusive`. Claims 1 and 5 also need no large rise in anomalous answers or loss of
valid mass (`anomaly`). Multiplicity: one pooled contrast per claim part (no per-cell tests); a claim of two
parts holds only if both do (an intersection-union test); one primary verdict per claim and unit pair (a
sweep's first setting); every other row is secondary, with Holm's adjusted p over all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .conditions import pooled
from .folds import design
from .metrics import group_names, measurable, name_draws
from .stats import percentile_interval, smd_from_sums
from .vocabulary import (
    BASE,
    GENERIC,
    HELD_OUT,
    IN_CONTEXT,
    LEVEL_LOO,
    LEVEL_VARIATION,
    MATCHED,
    OTHER_CONTEXT,
    PRUNED,
    RANDOM,
    generalisation,
    units_label,
)

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "inconclusive"
# "Without a large rise in anomalous outputs" (claims 1 and 5): the rise, over the unpruned model's own value,
# of the share of anomalous answers (valid values farther outside the unpruned 5-95% band than it is wide,
# metrics.FENCE, or every answer of a cell whose spread collapsed below COLLAPSE of the unpruned spread) and
# of the loss of valid probability mass (invalid answers, the expected readout's grid coverage, the exact
# readout's unexplored mass), each at most this.
ANOMALY_MARGIN = 0.05
COLLAPSE = 0.1
# The controls claims 1, 3 and 4 are decided against, the first the run evaluated on every cell: the
# group-blind generic control, then uniform random draws. A seeded control needs MIN_SEEDS seeds, resampled
# inside every bootstrap draw, so that its own randomness is in the interval. The matched control (drawn
# from the pool the mask was chosen from) is a specificity row of claim 1, Holm-corrected with the others.
DECIDING_CONTROLS = (GENERIC, RANDOM)
# Claim 3 holds only when its levels' masks prune shares within this ratio (general masks are intersections
# and shrink; a smaller mask removing less would make the claim by construction).
MAX_SHARE_RATIO = 2.0
MIN_SEEDS = 2
# Secondary rows (pairs other than the paper's, settings after a sweep's first, claim 5 in context, the
# matched-control specificity rows) are Holm-corrected together at this family-wise level (two-sided).
FAMILY_LEVEL = 0.05
CLAIMS = {
    1: "Pruning reduces the Black/White disparity without a large rise in anomalous outputs.",
    2: "Neuron-level pruning (MLP weights) reduces bias more than pruning attention heads.",
    3: "Effectiveness falls as the strategy is made more general: variation > held-out variation > other context.",
    4: "Bias is partly general (transfer beats its control) and partly context-specific (it falls short of the "
    "in-context effect).",
    5: "A linear direction found in other contexts removes more of the gap than the components found there.",
}
PAPER_PAIR = (units_label("weights", "wanda"), units_label("heads", "name_attention"))
SERIES = ["unit", "method", "scope", "condition", "setting", "control", "seed", "domain", "variation"]
FIELDS = ["n_valid", "total", "total_sq", "n_far", "n_answers", "mass_valid", "mass_total"]


class Draws:
    """Every per-name summary of a run evaluated on the shared name-bootstrap draws (draw 0 = all names).

    For each series (a mask or control on one variation, or the unpruned answers) it holds, per draw, |SMD|
    and the pooled FIELDS of both groups. The draws are the study's one name draw (metrics.name_draws): a
    name drawn twice counts twice in every domain, so cells pooled across domains keep their covariance."""

    def __init__(self, names: pd.DataFrame, groups: Sequence[str], metrics: dict):
        reference, focal = groups
        base = names[names["control"] == BASE]
        ddof = int(names["ddof"].iloc[0]) if "ddof" in names and len(names) else 1  # 0: exact distributions
        self.abs_smd, self.signed, self.counts = {}, {}, {}
        for domain, part in names.groupby("domain", sort=False):
            own = base[base["domain"] == domain]
            order = group_names(own, groups)
            ref_index, focal_index = name_draws(order, groups, metrics["bootstrap"], metrics["seed"])
            weights = [
                self._weights(index, len(order[g]))
                for index, g in ((ref_index, reference), (focal_index, focal))
            ]
            everyone = order[reference] + order[focal]
            keys = [c for c in SERIES if c != "domain"]
            table = part.set_index([*keys, "name"])[FIELDS]
            series = table.index.droplevel("name").unique()
            values = (
                table.reindex(pd.MultiIndex.from_tuples([(*s, n) for s in series for n in everyone]))
                .fillna(0)
                .to_numpy(float)
                .reshape(len(series), len(everyone), len(FIELDS))
            )
            split = len(order[reference])
            # (series, draws, fields) sums of each group under every draw
            ref = np.einsum("bi,sif->sbf", weights[0], values[:, :split])
            foc = np.einsum("bi,sif->sbf", weights[1], values[:, split:])
            signed = smd_from_sums(ref[..., :3], foc[..., :3], ddof)
            for i, key in enumerate(series):
                full = (*key[:7], domain, key[7])
                self.signed[full] = signed[i]
                self.abs_smd[full] = np.abs(signed[i])
                self.counts[full] = ref[i] + foc[i]

    @staticmethod
    def _weights(index: np.ndarray, size: int) -> np.ndarray:
        """How often each name is drawn in each resample, with draw 0 taking every name once."""
        counts = np.stack([np.bincount(row, minlength=size) for row in index]).astype(float)
        return np.vstack([np.ones(size), counts])

    @staticmethod
    def base_key(domain: str, variation: str) -> tuple:
        return ("", "", "", "", "", BASE, -1, domain, variation)

    def measurable(self, domain: str, variation: str, confidence: float) -> bool:
        """Whether the unpruned signed SMD's interval excludes 0."""
        return measurable(*percentile_interval(self.signed[self.base_key(domain, variation)][1:], confidence))


def _spread(counts: np.ndarray) -> np.ndarray:
    """Per draw, the SD of a series' valid answers from its pooled (count, sum, sum of squares)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts[:, 1] / counts[:, 0]
        return np.sqrt(np.maximum(counts[:, 2] / counts[:, 0] - mean**2, 0))


def _estimate(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Point (draw 0) and percentile interval (the other draws) of a per-draw quantity."""
    return float(values[0]), *percentile_interval(values[1:], confidence)


def _direction(low: float, high: float) -> int:
    """+1 if the interval lies above 0, -1 if below, 0 if it contains 0 or is undefined."""
    return 1 if low > 0 else -1 if high < 0 else 0


def seed_weights(count: int, draws: int, seed: int) -> np.ndarray:
    """(draws, count) weights of a control's seeds: draw 0 the mean over its seeds, every other draw a
    resample of the seeds with replacement, so the control's own randomness enters each interval."""
    rng = np.random.default_rng([seed, count])
    resampled = rng.multinomial(count, np.full(count, 1 / count), size=draws - 1)
    return np.vstack([np.ones(count), resampled]) / count


def bootstrap_p(values: np.ndarray) -> float:
    """Two-sided bootstrap p of a per-draw contrast (draw 0 the point): twice the smaller tail of the draws
    at 0, with the +1 of a Monte Carlo p. NaN when the draws are undefined."""
    draws = values[1:]
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return np.nan
    tail = min((draws <= 0).sum(), (draws >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (len(draws) + 1)))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p, float)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        out[index] = running
    return out


class Claims:
    """The claims of one run, from its conditions table (which cells exist, their level, their share
    pruned, KL) and the per-draw summaries."""

    def __init__(self, conditions: pd.DataFrame, draws: Draws, confidence: float, seed: int = 0):
        self.draws, self.confidence, self.seed = draws, confidence, seed
        cells = conditions[
            (conditions["level"] == "variation") & (conditions["control"] == PRUNED) & ~pooled(conditions)
        ].copy()
        cells["generalisation"] = [
            generalisation(s, bool(i)) for s, i in zip(cells["scope"], cells["in_sample"], strict=True)
        ]
        cells["units"] = units_label(cells["unit"], cells["method"])
        cells["measurable"] = [
            draws.measurable(d, v, confidence)
            for d, v in zip(cells["domain"], cells["variation"], strict=True)
        ]
        self.cells = cells.dropna(subset=["generalisation"])
        controls = conditions[conditions["control"] != PRUNED]
        self.seeds = {
            control: part.groupby([*SERIES[:5], "domain", "variation"])["seed"].apply(
                lambda s: sorted(set(s))
            )
            for control, part in controls.groupby("control")
        }
        self.kl = conditions[conditions["level"] == "domain"].groupby([*SERIES[:5], "control"])["kl"].mean()

    # -- pooled quantities per draw ------------------------------------------------------------------------

    def _key(self, cell, control=PRUNED, seed=-1) -> tuple:
        return (
            cell.unit,
            cell.method,
            cell.scope,
            cell.condition,
            cell.setting,
            control,
            seed,
            cell.domain,
            cell.variation,
        )

    def usable(self, cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
        """Cells that can carry a verdict, and what was left out."""
        vacuous = int(cells["vacuous"].sum())
        kept = cells[~cells["vacuous"]]
        unmeasurable = int((~kept["measurable"]).sum())
        kept = kept[kept["measurable"]]
        note = f"{len(kept)} of {len(cells)} cells"
        if vacuous:
            note += f"; {vacuous} left out: the mask prunes nothing"
        if unmeasurable:
            note += f"; {unmeasurable} left out: no measurable baseline bias"
        return kept, note

    def control_of(self, cells: pd.DataFrame, choices=DECIDING_CONTROLS) -> tuple[str | None, str]:
        """(the first of `choices` evaluated on every cell with at least MIN_SEEDS seeds if seeded, why none)."""
        why = []
        for control in choices:
            seeds = self.seeds.get(control)
            if (
                seeds is None
                or not len(cells)
                or not all(self._cell(c) in seeds.index for c in cells.itertuples())
            ):
                why.append(f"no {control} control on every cell")
                continue
            count = min(len(seeds[self._cell(c)]) for c in cells.itertuples())
            if control != GENERIC and count < MIN_SEEDS:
                why.append(f"the {control} control has {count} seed (its randomness needs {MIN_SEEDS})")
                continue
            return control, ""
        return None, "; ".join(why)

    @staticmethod
    def _cell(c) -> tuple:
        return (c.unit, c.method, c.scope, c.condition, c.setting, c.domain, c.variation)

    def _seeds(self, cell, control: str) -> list[int]:
        return self.seeds[control][self._cell(cell)]

    def _over_seeds(self, per_seed: list[np.ndarray]) -> np.ndarray:
        """A control's per-draw quantity from its seeds' (seed_weights: resampled in every draw)."""
        stacked = np.stack(per_seed)
        weights = seed_weights(len(per_seed), stacked.shape[1], self.seed)
        return np.einsum("bk,kb->b", weights, stacked)

    def reduction(self, cells: pd.DataFrame, control: str = PRUNED) -> np.ndarray:
        """Pooled reduction 1 - sum|SMD| / sum|SMD_base| per draw (a control: over its resampled seeds)."""
        base = sum(self.draws.abs_smd[Draws.base_key(c.domain, c.variation)] for c in cells.itertuples())
        if control == PRUNED:
            return 1 - sum(self.draws.abs_smd[self._key(c)] for c in cells.itertuples()) / base
        seeds = self._seeds(next(cells.itertuples()), control)
        pruned = [
            sum(self.draws.abs_smd[self._key(c, control, s)] for c in cells.itertuples()) for s in seeds
        ]
        return 1 - self._over_seeds(pruned) / base

    def change(self, cells: pd.DataFrame) -> np.ndarray:
        """Mean absolute change of |SMD| per cell (pruned minus unpruned), per draw."""
        return np.mean(
            [
                self.draws.abs_smd[self._key(c)] - self.draws.abs_smd[Draws.base_key(c.domain, c.variation)]
                for c in cells.itertuples()
            ],
            axis=0,
        )

    def rates(self, cells: pd.DataFrame, control: str = PRUNED) -> tuple[np.ndarray, np.ndarray]:
        """(anomalous share, valid-mass loss) per draw pooled over the cells: valid answers farther outside
        the unpruned band than it is wide (all of a cell's whose spread collapsed below COLLAPSE of the
        unpruned spread) among valid ones, and the probability not read as a valid number among all.
        control="base": the unpruned model's own; a control: over its resampled seeds."""
        bases = [Draws.base_key(c.domain, c.variation) for c in cells.itertuples()]
        if control == BASE:
            series = [bases]
        elif control == PRUNED:
            series = [[self._key(c) for c in cells.itertuples()]]
        else:
            seeds = self._seeds(next(cells.itertuples()), control)
            series = [[self._key(c, control, s) for c in cells.itertuples()] for s in seeds]
        anomalous, lost = [], []
        for keys in series:
            far, valid, mass_valid, mass_total = 0, 0, 0, 0
            for key, base in zip(keys, bases, strict=True):
                counts = self.draws.counts[key]
                collapsed = _spread(counts) < COLLAPSE * _spread(self.draws.counts[base])
                far = far + np.where(collapsed, counts[:, 0], counts[:, 3])
                valid, mass_valid, mass_total = (
                    valid + counts[:, 0],
                    mass_valid + counts[:, 5],
                    mass_total + counts[:, 6],
                )
            with np.errstate(invalid="ignore", divide="ignore"):
                anomalous.append(far / valid)
                lost.append(1 - mass_valid / mass_total)
        if len(series) == 1:
            return anomalous[0], lost[0]
        return self._over_seeds(anomalous), self._over_seeds(lost)

    def anomaly(self, cells: pd.DataFrame) -> tuple[dict, bool, bool, str]:
        """(rises over the unpruned model's own value per draw, large, small, text) of the cells' anomalous
        share and valid-mass loss: large when a rise's interval lies above ANOMALY_MARGIN, small when both lie
        at or below it."""
        anomalous, lost = self.rates(cells)
        own_anomalous, own_lost = self.rates(cells, BASE)
        rises = {"anomalous-share rise": anomalous - own_anomalous, "valid-mass loss rise": lost - own_lost}
        bounds = [self.estimate(values) for values in rises.values()]
        large = any(low > ANOMALY_MARGIN for _, low, _ in bounds)
        small = all(high <= ANOMALY_MARGIN for _, _, high in bounds)
        text = (
            f"anomalous share {self._fmt(anomalous)} vs the unpruned model's own {self._fmt(own_anomalous)}; "
            f"valid-mass loss {self._fmt(lost)} vs {self._fmt(own_lost)} (a rise counts as large above "
            f"{ANOMALY_MARGIN})"
        )
        return rises, large, small, text

    def estimate(self, values: np.ndarray) -> tuple[float, float, float]:
        return _estimate(values, self.confidence)

    def row(self, claim, units, setting, verdict, contrast, values, cells, note, evidence, primary=True):
        estimate, low, high = self.estimate(values) if values is not None else (np.nan,) * 3
        return {
            "claim": claim,
            "units": units,
            "setting": setting,
            "verdict": verdict,
            "primary": primary,
            "contrast": contrast,
            "estimate": estimate,
            "low": low,
            "high": high,
            "p": bootstrap_p(values) if values is not None else np.nan,
            "cells": cells,
            "cells_note": note,
            "evidence": evidence,
        }

    def _share(self, cells: pd.DataFrame) -> float:
        return float(cells["share_pruned"].mean()) if len(cells) else np.nan

    def _kl(self, cells: pd.DataFrame, control: str) -> float:
        keys = {(c.unit, c.method, c.scope, c.condition, c.setting, control) for c in cells.itertuples()}
        values = [self.kl.get(k, np.nan) for k in keys]
        return float(np.nanmean(values)) if values and np.isfinite(values).any() else np.nan

    def _fmt(self, values) -> str:
        point, low, high = self.estimate(values)
        return f"{point:+.2f} [{low:+.2f}, {high:+.2f}]"

    # -- the claims -----------------------------------------------------------------------------------------

    def pruning_works(self) -> list[dict]:
        out = []
        for (units, setting), all_cells in self.cells[self.cells["generalisation"] == IN_CONTEXT].groupby(
            ["units", "setting"], sort=False
        ):
            cells, note = self.usable(all_cells)
            control, why = self.control_of(cells)
            if cells.empty or control is None:
                reason = (
                    "no measurable baseline bias"
                    if len(all_cells) and (~all_cells["measurable"]).all()
                    else "every mask prunes nothing"
                    if all_cells["vacuous"].all()
                    else f"no control to decide against: {why}"
                )
                out.append(
                    self.row(
                        1,
                        units,
                        setting,
                        UNKNOWN,
                        "reduction minus its control",
                        None,
                        len(cells),
                        note,
                        reason,
                    )
                )
                continue
            excess = self.reduction(cells) - self.reduction(cells, control)
            rises, large, small, anomaly = self.anomaly(cells)
            direction = _direction(*self.estimate(excess)[1:])
            verdict = HOLDS if direction > 0 and small else FAILS if direction < 0 or large else UNKNOWN
            evidence = (
                f"pooled reduction {self._fmt(self.reduction(cells))} vs {control} control "
                f"{self._fmt(self.reduction(cells, control))}; excess {self._fmt(excess)}; mean change of |SMD| "
                f"{self._fmt(self.change(cells))}; {anomaly}; KL {self._kl(cells, PRUNED):.3f} vs "
                f"{control} control {self._kl(cells, control):.3f}; share pruned {self._share(cells):.4f}"
            )
            out.append(
                self.row(
                    1,
                    units,
                    setting,
                    verdict,
                    f"reduction minus {control} control",
                    excess,
                    len(cells),
                    note,
                    evidence,
                )
            )
            for name, values in rises.items():
                out.append(
                    self.row(
                        1,
                        units,
                        setting,
                        verdict,
                        f"{name} (margin {ANOMALY_MARGIN})",
                        values,
                        len(cells),
                        note,
                        evidence,
                    )
                )
            out.append(self.specificity(cells, units, setting, note))
        return out

    def specificity(self, cells: pd.DataFrame, units: str, setting: str, note: str) -> dict:
        """Claim 1's secondary row: the reduction minus that of the matched control (drawn from the pool the
        mask was chosen from), when it was evaluated on every cell with enough seeds."""
        contrast = f"reduction minus {MATCHED} control (specificity)"
        control, why = self.control_of(cells, (MATCHED,))
        if control is None:
            return self.row(1, units, setting, UNKNOWN, contrast, None, len(cells), note, why, False)
        excess = self.reduction(cells) - self.reduction(cells, MATCHED)
        evidence = (
            f"pooled reduction {self._fmt(self.reduction(cells))} vs {MATCHED} control "
            f"{self._fmt(self.reduction(cells, MATCHED))}; secondary, Holm-corrected"
        )
        return self.row(1, units, setting, "secondary", contrast, excess, len(cells), note, evidence, False)

    def neurons_beat_heads(self) -> list[dict]:
        in_context = self.cells[self.cells["generalisation"] == IN_CONTEXT]
        neuron = in_context[in_context["unit"].isin(["weights", "neurons"])]
        heads = in_context[in_context["unit"] == "heads"]
        out = []
        for (a_units, a_setting), a in neuron.groupby(["units", "setting"], sort=False):
            for (b_units, b_setting), b in heads.groupby(["units", "setting"], sort=False):
                primary = (a_units, b_units) == PAPER_PAIR
                where = ["domain", "variation"]
                a_ok, note_a = self.usable(a)
                b_ok, note_b = self.usable(b)
                shared = a_ok.merge(b_ok[where], on=where)
                paired = b_ok.merge(shared[where], on=where)
                units, setting = f"{a_units} vs {b_units}", f"{a_setting} vs {b_setting}"
                note = f"{len(shared)} cells usable for both ({a_units}: {note_a}; {b_units}: {note_b})"
                if shared.empty:
                    reason = "no cell usable for both methods (empty masks or no measurable baseline bias)"
                    out.append(
                        self.row(
                            2,
                            units,
                            setting,
                            UNKNOWN if primary else "secondary",
                            "reduction difference",
                            None,
                            0,
                            note,
                            reason,
                            primary,
                        )
                    )
                    continue
                difference = self.reduction(shared) - self.reduction(paired)
                direction = _direction(*self.estimate(difference)[1:])
                verdict = {1: HOLDS, -1: FAILS, 0: UNKNOWN}[direction] if primary else "secondary"
                evidence = (
                    f"pooled in-context reduction {a_units} {self._fmt(self.reduction(shared))} (share pruned "
                    f"{self._share(shared):.4f}, KL {self._kl(shared, PRUNED):.3f}) vs {b_units} "
                    f"{self._fmt(self.reduction(paired))} (share pruned {self._share(paired):.4f}, KL "
                    f"{self._kl(paired, PRUNED):.3f}); difference {self._fmt(difference)}"
                    + ("" if primary else "; secondary pair, does not decide the claim")
                )
                out.append(
                    self.row(
                        2,
                        units,
                        setting,
                        verdict,
                        f"{a_units} minus {b_units} reduction",
                        difference,
                        len(shared),
                        note,
                        evidence,
                        primary,
                    )
                )
        if not any(row["primary"] for row in out):
            out.append(
                self.row(
                    2,
                    " vs ".join(PAPER_PAIR),
                    "",
                    UNKNOWN,
                    "reduction difference",
                    None,
                    0,
                    "",
                    "the run lacks the paper's pair of methods",
                )
            )
        return out

    def _excess(self, cells: pd.DataFrame):
        """(excess over the deciding control per draw, control, cells used, note) of one level's cells."""
        kept, note = self.usable(cells)
        control, why = self.control_of(kept)
        if kept.empty or control is None:
            return None, control, kept, f"{note}; {why}" if why else note
        return self.reduction(kept) - self.reduction(kept, control), control, kept, note

    def generality(self) -> list[dict]:
        out = []
        for (units, setting), cells in self.cells.groupby(["units", "setting"], sort=False):
            levels = {
                "variation": cells[cells["generalisation"] == LEVEL_VARIATION],
                "held-out variation": cells[cells["generalisation"] == LEVEL_LOO],
                "other context": cells[cells["generalisation"].isin(OTHER_CONTEXT)],
            }
            # the levels on the same evaluated variations, so that no level is pooled over easier ones
            shared = set.intersection(
                *(
                    set(zip(u["domain"], u["variation"], strict=True))
                    for u, _ in map(self.usable, levels.values())
                )
            )
            levels = {
                # a bool array, never a list: an empty list would select no columns of an empty level
                name: part[
                    np.array(
                        [(d, v) in shared for d, v in zip(part["domain"], part["variation"], strict=True)],
                        bool,
                    )
                ]
                for name, part in levels.items()
            }
            excess = {name: self._excess(part) for name, part in levels.items()}
            missing = [name for name, (values, *_) in excess.items() if values is None]
            notes = "; ".join(f"{name}: {e[3]}" for name, e in excess.items())
            if missing:
                reason = f"no usable cells with a control at: {', '.join(missing)}"
                out.append(
                    self.row(
                        3,
                        units,
                        setting,
                        UNKNOWN,
                        "excess differences between levels",
                        None,
                        0,
                        notes,
                        reason,
                    )
                )
                continue
            names = list(excess)
            pairs = [(names[0], names[1]), (names[1], names[2])]
            differences = {
                f"{a} minus {b} (excess over control)": excess[a][0] - excess[b][0] for a, b in pairs
            }
            directions = [_direction(*self.estimate(v)[1:]) for v in differences.values()]
            verdict = HOLDS if all(d > 0 for d in directions) else FAILS if min(directions) < 0 else UNKNOWN
            evidence = f"on the {len(shared)} variations every level has; " + "; ".join(
                f"{name}: excess over {e[1]} control {self._fmt(e[0])}, share pruned {self._share(e[2]):.4f}"
                for name, e in excess.items()
            )
            shares = [self._share(e[2]) for e in excess.values()]
            if not min(shares) > 0 or max(shares) / min(shares) > MAX_SHARE_RATIO:
                evidence += (
                    f"; the levels' masks differ in size by more than {MAX_SHARE_RATIO:g}x, so a fall with "
                    "generality may be built in by mask size"
                )
                verdict = UNKNOWN if verdict == HOLDS else verdict
            cells_used = sum(len(e[2]) for e in excess.values())
            for contrast, values in differences.items():
                out.append(
                    self.row(3, units, setting, verdict, contrast, values, cells_used, notes, evidence)
                )
        return out

    def partly_general(self) -> list[dict]:
        out = []
        for (units, setting), cells in self.cells.groupby(["units", "setting"], sort=False):
            transfer, control, transfer_cells, note_t = self._excess(
                cells[cells["generalisation"].isin(OTHER_CONTEXT)]
            )
            inside, note_i = self.usable(cells[cells["generalisation"] == IN_CONTEXT])
            notes = f"transfer: {note_t}; in context: {note_i}"
            if transfer is None or inside.empty:
                reason = (
                    "no usable transfer cells with a control"
                    if transfer is None
                    else "no usable in-context cells"
                )
                out.append(self.row(4, units, setting, UNKNOWN, "transfer contrasts", None, 0, notes, reason))
                continue
            specific = self.reduction(inside) - self.reduction(transfer_cells)
            differences = {
                f"transfer minus {control} control": transfer,
                "in-context minus transfer": specific,
            }
            directions = [_direction(*self.estimate(v)[1:]) for v in differences.values()]
            verdict = HOLDS if all(d > 0 for d in directions) else FAILS if min(directions) < 0 else UNKNOWN
            evidence = (
                f"pooled reduction in context {self._fmt(self.reduction(inside))}, in transfer "
                f"{self._fmt(self.reduction(transfer_cells))}, {control} control in transfer "
                f"{self._fmt(self.reduction(transfer_cells, control))}"
            )
            for contrast, values in differences.items():
                out.append(
                    self.row(
                        4,
                        units,
                        setting,
                        verdict,
                        contrast,
                        values,
                        len(transfer_cells) + len(inside),
                        notes,
                        evidence,
                    )
                )
        return out

    def directions_beat_components(self) -> list[dict]:
        """Claim 5: per directions method and setting, its pooled reduction minus the best paper method's on
        the cells both can carry, at the held-out (cross) level (deciding) and in context (not deciding)."""
        directions = self.cells[self.cells["unit"] == "directions"]
        papers = self.cells[self.cells["units"].isin(PAPER_PAIR)]
        where = ["domain", "variation"]
        out = []
        for (units, setting), all_cells in directions.groupby(["units", "setting"], sort=False):
            for level, label, primary in ((HELD_OUT, "held out", True), (IN_CONTEXT, "in context", False)):
                mine, note = self.usable(all_cells[all_cells["generalisation"] == level])
                at_level = papers[papers["generalisation"] == level]
                candidates, notes = {}, [f"{units}: {note}"]
                for (p_units, p_setting), part in at_level.groupby(["units", "setting"]):
                    p_ok, p_note = self.usable(part)
                    shared = mine.merge(p_ok[where], on=where)
                    notes.append(f"{p_units} ({p_setting}): {p_note}, {len(shared)} shared")
                    if not shared.empty:
                        paired = p_ok.merge(shared[where], on=where)
                        candidates[p_units, p_setting] = (shared, paired, self.reduction(paired))
                contrast = f"{units} minus best paper method reduction ({label})"
                if not candidates:
                    reason = (
                        "the run lacks a paper method at this level"
                        if at_level.empty
                        else f"the run lacks {units} at this level"
                        if not (all_cells["generalisation"] == level).any()
                        else "no cell usable for both the direction and a paper method (empty masks or no "
                        "measurable baseline bias)"
                    )
                    out.append(
                        self.row(
                            5, units, setting, UNKNOWN, contrast, None, 0, "; ".join(notes), reason, primary
                        )
                    )
                    continue
                # The best paper method is picked after seeing its point reduction on these very cells: the
                # selection can only favour the components, so it makes the claim harder to hold (conservative).
                best = max(candidates, key=lambda k: np.nan_to_num(candidates[k][2][0], nan=-np.inf))
                shared, paired, theirs = candidates[best]
                ours = self.reduction(shared)
                difference = ours - theirs
                direction = _direction(*self.estimate(difference)[1:])
                # the damage gate of claim 1: a direction that removes the gap by wrecking answers does not win
                _, large, small, anomaly = self.anomaly(shared)
                verdict = HOLDS if direction > 0 and small else FAILS if direction < 0 or large else UNKNOWN
                others = ", ".join(
                    f"{u} ({s}) {values[2][0]:+.2f} on {len(values[0])} cells"
                    for (u, s), values in candidates.items()
                    if (u, s) != best
                )
                evidence = (
                    f"pooled reduction ({label}) {units} {self._fmt(ours)} (share pruned {self._share(shared):.4f}, "
                    f"KL {self._kl(shared, PRUNED):.3f}) vs best paper method {best[0]} ({best[1]}) "
                    f"{self._fmt(theirs)} (share pruned {self._share(paired):.4f}, KL "
                    f"{self._kl(paired, PRUNED):.3f}); difference {self._fmt(difference)}; best chosen by the "
                    f"larger point reduction on the shared cells; other candidates: {others or 'none'}; the direction's "
                    f"{anomaly}" + ("" if primary else "; within context, does not decide the claim")
                )
                out.append(
                    self.row(
                        5,
                        units,
                        setting,
                        verdict,
                        f"{units} minus {best[0]} reduction ({label})",
                        difference,
                        len(shared),
                        "; ".join(notes),
                        evidence,
                        primary,
                    )
                )
        return out


def findings(
    conditions: pd.DataFrame, names: pd.DataFrame, groups: Sequence[str], metrics: dict
) -> pd.DataFrame:
    """One row per contrast of each claim and unit/method (and setting): the claim's verdict, the contrast's
    estimate and interval, the cells it pools and those left out, and the numbers behind it. Claim 5 has rows
    only in a run with directions."""
    claims = Claims(conditions, Draws(names, groups, metrics), metrics["confidence"], metrics["seed"])
    table = pd.DataFrame(
        claims.pruning_works()
        + claims.neurons_beat_heads()
        + claims.generality()
        + claims.partly_general()
        + claims.directions_beat_components()
    )
    table.insert(1, "statement", table["claim"].map(CLAIMS))
    folds = int(conditions["name_folds"].max()) if "name_folds" in conditions and len(conditions) else 1
    table["names"] = design(folds)
    return multiplicity(table, metrics["confidence"])


def multiplicity(table: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One primary verdict per claim and unit pair (a sweep's first setting; the others, like every other
    secondary row, say `secondary`), and Holm's adjusted p over the secondary rows (`p_holm`), with each row's
    `multiplicity` stating the count and the level."""
    table = table.copy()
    first = table.groupby(["claim", "units"], sort=False)["setting"].transform("first")
    table["primary"] = table["primary"] & (table["setting"] == first)
    table.loc[~table["primary"], "verdict"] = "secondary"
    # the anomaly rises are tested against a margin, not 0: not in the family
    secondary = ~table["primary"] & ~table["contrast"].str.contains(" rise (margin", regex=False)
    table["p_holm"] = np.nan
    table.loc[secondary, "p_holm"] = holm(table.loc[secondary, "p"].to_numpy(float))
    verdicts = table[table["primary"]].drop_duplicates(["claim", "units", "setting"])
    tested = int(np.isfinite(table.loc[secondary, "p"]).sum())
    table["multiplicity"] = np.where(
        table["primary"],
        f"one of {len(verdicts)} primary verdicts, each from {confidence:.0%} intervals (one-sided "
        f"{(1 - confidence) / 2:.3g} per direction), not corrected across claims",
        f"secondary: Holm over {tested} secondary contrasts, family-wise {FAMILY_LEVEL} (p_holm)",
    )
    return table
