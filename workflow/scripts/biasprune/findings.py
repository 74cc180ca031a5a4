"""The study's claims checked on this run: every verdict rests on a paired contrast with its interval.

Claims (study-facts, from the paper's abstract):
1. Pruning reduces the Black/White disparity without a large rise in anomalous outputs.
2. Neuron-level pruning reduces bias more than pruning attention heads (decided on the paper's pair,
   `weights/wanda` against `heads/name_attention`; other pairs are secondary rows).
3. Effectiveness falls as the strategy is made more general: variation > held-out variation > other context,
   each level measured by its excess over its size-matched control.
4. Bias is partly general (transfer beats its control) and partly context-specific (transfer falls short
   of the in-context effect).
5. A linear direction found in other contexts removes more of the gap than the components found there
   (decided per `directions` method and setting on held-out (cross) cells: its pooled reduction minus that of
   the paper method, `weights/wanda` or `heads/name_attention`, with the larger point reduction on the shared
   cells; the same contrast in context is a second row that does not decide the claim).

How a number is made. A cell is one evaluated variation under one mask. Cells whose mask prunes nothing
(vacuous) and cells whose unpruned signed-SMD interval contains 0 (no measurable gap to reduce) are left
out and counted. Over the remaining cells of a claim the reduction is pooled, R = 1 - sum|SMD_pruned| /
sum|SMD_base|, never a mean of ratios. Every quantity is recomputed on the same name-bootstrap draws
(names resampled within each race group, the draws shared by every table of a domain), so contrasts such as
"pruned minus its control" are differences draw by draw; the interval is the percentile interval of that
difference. A contrast supports its claim only when its interval excludes 0 in the claimed direction, and
contradicts it only when it excludes 0 the other way; anything else, and any empty or undefined input, is
`inconclusive`. Multiplicity: one pooled contrast per claim part (no per-cell tests); a claim of two parts
holds only if both do (an intersection-union test, which needs no correction). Rows of different methods or
settings are separate verdicts, never averaged across a sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .conditions import pooled
from .metrics import measurable, name_draws
from .stats import percentile_interval, smd_from_sums
from .vocabulary import (
    BASE,
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
# "Without a large rise in anomalous outputs" (claim 1): the rise, over the unpruned model's own value, of
# the share of answers outside the unpruned 5-95% band and of the invalid-answer rate, each at most this.
ANOMALY_MARGIN = 0.05
# The control each contrast is taken against: the hardest one the run evaluated.
REFERENCE_CONTROLS = (MATCHED, RANDOM)
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
FIELDS = ["n_valid", "total", "total_sq", "n_inlier", "n_answers"]


class Draws:
    """Every per-name summary of a run evaluated on the shared name-bootstrap draws (draw 0 = all names).

    For each series (a mask or control on one variation, or the unpruned answers) it holds, per draw, |SMD|
    and the pooled counts (valid answers, answers inside the unpruned band, answers)."""

    def __init__(self, names: pd.DataFrame, groups: Sequence[str], metrics: dict):
        reference, focal = groups
        base = names[names["control"] == BASE]
        ddof = int(names["ddof"].iloc[0]) if "ddof" in names and len(names) else 1  # 0: exact distributions
        self.abs_smd, self.signed, self.counts = {}, {}, {}
        for domain, part in names.groupby("domain", sort=False):
            own = base[base["domain"] == domain]
            order = {g: list(dict.fromkeys(own.loc[own["race"] == g, "name"])) for g in groups}
            ref_index, focal_index = name_draws(order, groups, metrics["bootstrap"], metrics["seed"], domain)
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


def _estimate(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Point (draw 0) and percentile interval (the other draws) of a per-draw quantity."""
    return float(values[0]), *percentile_interval(values[1:], confidence)


def _direction(low: float, high: float) -> int:
    """+1 if the interval lies above 0, -1 if below, 0 if it contains 0 or is undefined."""
    return 1 if low > 0 else -1 if high < 0 else 0


class Claims:
    """The claims of one run, from its conditions table (which cells exist, their level, their share
    pruned, KL) and the per-draw summaries."""

    def __init__(self, conditions: pd.DataFrame, draws: Draws, confidence: float):
        self.draws, self.confidence = draws, confidence
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

    def control_of(self, cells: pd.DataFrame) -> str | None:
        """The reference control every cell has (matched if evaluated everywhere, else random)."""
        for control in REFERENCE_CONTROLS:
            seeds = self.seeds.get(control)
            if (
                seeds is not None
                and len(cells)
                and all(
                    (c.unit, c.method, c.scope, c.condition, c.setting, c.domain, c.variation) in seeds.index
                    for c in cells.itertuples()
                )
            ):
                return control
        return None

    def _seeds(self, cell, control: str) -> list[int]:
        return self.seeds[control][
            (cell.unit, cell.method, cell.scope, cell.condition, cell.setting, cell.domain, cell.variation)
        ]

    def reduction(self, cells: pd.DataFrame, control: str = PRUNED) -> np.ndarray:
        """Pooled reduction 1 - sum|SMD| / sum|SMD_base| per draw (a control: mean over its seeds)."""
        base = sum(self.draws.abs_smd[Draws.base_key(c.domain, c.variation)] for c in cells.itertuples())
        if control == PRUNED:
            return 1 - sum(self.draws.abs_smd[self._key(c)] for c in cells.itertuples()) / base
        seeds = self._seeds(next(cells.itertuples()), control)
        pruned = [
            sum(self.draws.abs_smd[self._key(c, control, s)] for c in cells.itertuples()) for s in seeds
        ]
        return 1 - np.mean(pruned, axis=0) / base

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
        """(anomalous share, invalid rate) per draw pooled over the cells: answers outside the unpruned
        5-95% band among valid ones, invalid among all. control="base": the unpruned model's own; a control:
        the mean over its seeds."""
        if control == BASE:
            series = [[Draws.base_key(c.domain, c.variation) for c in cells.itertuples()]]
        elif control == PRUNED:
            series = [[self._key(c) for c in cells.itertuples()]]
        else:
            seeds = self._seeds(next(cells.itertuples()), control)
            series = [[self._key(c, control, s) for c in cells.itertuples()] for s in seeds]
        anomalous, invalid = [], []
        for keys in series:
            total = sum(self.draws.counts[k] for k in keys)
            valid, inlier, answers = total[:, 0], total[:, 3], total[:, 4]
            with np.errstate(invalid="ignore", divide="ignore"):
                anomalous.append(1 - inlier / valid)
                invalid.append(1 - valid / answers)
        return np.mean(anomalous, axis=0), np.mean(invalid, axis=0)

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
            ["units", "setting"]
        ):
            cells, note = self.usable(all_cells)
            control = self.control_of(cells)
            if cells.empty or control is None:
                reason = (
                    "no measurable baseline bias"
                    if len(all_cells) and (~all_cells["measurable"]).all()
                    else "every mask prunes nothing"
                    if all_cells["vacuous"].all()
                    else "no control evaluated on these cells"
                )
                out.append(
                    self.row(
                        1,
                        units,
                        setting,
                        UNKNOWN,
                        f"reduction minus control ({reason})",
                        None,
                        len(cells),
                        note,
                        reason,
                    )
                )
                continue
            excess = self.reduction(cells) - self.reduction(cells, control)
            anomalous, invalid = self.rates(cells)
            own_anomalous, own_invalid = self.rates(cells, BASE)
            rises = {
                "anomalous-share rise": anomalous - own_anomalous,
                "invalid-rate rise": invalid - own_invalid,
            }
            direction = _direction(*self.estimate(excess)[1:])
            bounds = {name: self.estimate(values) for name, values in rises.items()}
            large = any(low > ANOMALY_MARGIN for _, low, _ in bounds.values())
            small = all(high <= ANOMALY_MARGIN for _, _, high in bounds.values())
            verdict = HOLDS if direction > 0 and small else FAILS if direction < 0 or large else UNKNOWN
            evidence = (
                f"pooled reduction {self._fmt(self.reduction(cells))} vs {control} control "
                f"{self._fmt(self.reduction(cells, control))}; excess {self._fmt(excess)}; mean change of |SMD| "
                f"{self._fmt(self.change(cells))}; anomalous share {self._fmt(anomalous)} vs the unpruned model's "
                f"own {self._fmt(own_anomalous)} and the {control} control's {self._fmt(self.rates(cells, control)[0])}; "
                f"invalid rate {self._fmt(invalid)} vs {self._fmt(own_invalid)} "
                f"(a rise counts as large above {ANOMALY_MARGIN}); KL {self._kl(cells, PRUNED):.3f} vs "
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
        return out

    def neurons_beat_heads(self) -> list[dict]:
        in_context = self.cells[self.cells["generalisation"] == IN_CONTEXT]
        neuron = in_context[in_context["unit"].isin(["weights", "neurons"])]
        heads = in_context[in_context["unit"] == "heads"]
        out = []
        for (a_units, a_setting), a in neuron.groupby(["units", "setting"]):
            for (b_units, b_setting), b in heads.groupby(["units", "setting"]):
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
        """(excess over the reference control per draw, control, cells used, note) of one level's cells."""
        kept, note = self.usable(cells)
        control = self.control_of(kept)
        if kept.empty or control is None:
            return None, control, kept, note
        return self.reduction(kept) - self.reduction(kept, control), control, kept, note

    def generality(self) -> list[dict]:
        out = []
        for (units, setting), cells in self.cells.groupby(["units", "setting"]):
            levels = {
                "variation": cells[cells["generalisation"] == LEVEL_VARIATION],
                "held-out variation": cells[cells["generalisation"] == LEVEL_LOO],
                "other context": cells[cells["generalisation"].isin(OTHER_CONTEXT)],
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
            evidence = "; ".join(
                f"{name}: excess over {e[1]} control {self._fmt(e[0])}, share pruned {self._share(e[2]):.4f}"
                for name, e in excess.items()
            )
            cells_used = sum(len(e[2]) for e in excess.values())
            for contrast, values in differences.items():
                out.append(
                    self.row(3, units, setting, verdict, contrast, values, cells_used, notes, evidence)
                )
        return out

    def partly_general(self) -> list[dict]:
        out = []
        for (units, setting), cells in self.cells.groupby(["units", "setting"]):
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
        for (units, setting), all_cells in directions.groupby(["units", "setting"]):
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
                verdict = {1: HOLDS, -1: FAILS, 0: UNKNOWN}[direction]
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
                    f"larger point reduction on the shared cells; other candidates: {others or 'none'}"
                    + ("" if primary else "; within context, does not decide the claim")
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
    claims = Claims(conditions, Draws(names, groups, metrics), metrics["confidence"])
    table = pd.DataFrame(
        claims.pruning_works()
        + claims.neurons_beat_heads()
        + claims.generality()
        + claims.partly_general()
        + claims.directions_beat_components()
    )
    table.insert(1, "statement", table["claim"].map(CLAIMS))
    return table
