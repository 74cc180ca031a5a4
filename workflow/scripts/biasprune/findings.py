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
from dataclasses import KW_ONLY, dataclass, replace

import numpy as np
import pandas as pd

from .draws import Draws, holm, side, summary
from .evidence import ANOMALY_MARGIN, FAILS, HOLDS, UNKNOWN, Evidence, at, by_units, variations
from .folds import design
from .vocabulary import (
    HELD_OUT,
    IN_CONTEXT,
    LEVEL_LOO,
    LEVEL_VARIATION,
    MATCHED,
    OTHER_CONTEXT,
    units_label,
)

# Claim 3 holds only when its levels' masks prune shares within this ratio (general masks are intersections
# and shrink; a smaller mask removing less would make the claim by construction).
MAX_SHARE_RATIO = 2.0
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


@dataclass(frozen=True)
class Row:
    """One contrast of a claim: `values` is the contrast per draw (None when it could not be computed: no
    estimate, interval or p), `cells` the cells it pools, `cells_note` those left out and `evidence` the
    numbers behind the verdict, or why there is none."""

    claim: int
    units: str
    setting: str
    _: KW_ONLY
    contrast: str
    verdict: str = UNKNOWN
    values: np.ndarray | None = None
    cells: int = 0
    cells_note: str = ""
    evidence: str = ""
    primary: bool = True

    def record(self, confidence: float) -> dict:
        """The findings table's row: the contrast's point, percentile interval and bootstrap p."""
        estimate, low, high, p = summary(self.values, confidence)
        return {
            "claim": self.claim,
            "units": self.units,
            "setting": self.setting,
            "verdict": self.verdict,
            "primary": self.primary,
            "contrast": self.contrast,
            "estimate": estimate,
            "low": low,
            "high": high,
            "p": p,
            "cells": self.cells,
            "cells_note": self.cells_note,
            "evidence": self.evidence,
        }


class Claims(Evidence):
    """The five claims of one run, each a list of rows (Evidence: the cells, controls and numbers they rest
    on)."""

    def pruning_works(self) -> list[Row]:
        out = []
        for (units, setting), all_cells in by_units(at(self.cells, IN_CONTEXT)):
            cells, note = self.usable(all_cells)
            control, why = self.control_of(cells)
            row = Row(
                1, units, setting, contrast="reduction minus its control", cells=len(cells), cells_note=note
            )
            if cells.empty or control is None:
                reason = (
                    "no measurable baseline bias"
                    if len(all_cells) and (~all_cells["measurable"]).all()
                    else "every mask prunes nothing"
                    if all_cells["vacuous"].all()
                    else f"no control to decide against: {why}"
                )
                out.append(replace(row, evidence=reason))
                continue
            reduction = self.pool.reduction
            excess = reduction(cells) - reduction(cells, control)
            rises, large, small, anomaly = self.anomaly(cells)
            evidence = (
                f"pooled reduction {self._fmt(reduction(cells))} vs {control} control "
                f"{self._fmt(reduction(cells, control))}; excess {self._fmt(excess)}; mean change of |SMD| "
                f"{self._fmt(self.pool.change(cells))}; {anomaly}; KL {self._kl(cells):.3f} vs "
                f"{control} control {self._kl(cells, control):.3f}; share pruned {self._share(cells):.4f}"
            )
            row = replace(row, verdict=self._gated(excess, large, small), evidence=evidence)
            contrasts = {f"reduction minus {control} control": excess}
            contrasts |= {f"{name} (margin {ANOMALY_MARGIN})": values for name, values in rises.items()}
            out += [replace(row, contrast=c, values=v) for c, v in contrasts.items()]
            out.append(self.specificity(cells, row))
        return out

    def specificity(self, cells: pd.DataFrame, row: Row) -> Row:
        """Claim 1's secondary row (`row`: its excess row): the reduction minus that of the matched control
        (drawn from the pool the mask was chosen from), when it was evaluated on every cell with enough
        seeds."""
        contrast = f"reduction minus {MATCHED} control (specificity)"
        row = replace(row, verdict=UNKNOWN, contrast=contrast, primary=False)
        control, why = self.control_of(cells, (MATCHED,))
        if control is None:
            return replace(row, evidence=why)
        reduction = self.pool.reduction
        evidence = (
            f"pooled reduction {self._fmt(reduction(cells))} vs {MATCHED} control "
            f"{self._fmt(reduction(cells, MATCHED))}; secondary, Holm-corrected"
        )
        excess = reduction(cells) - reduction(cells, MATCHED)
        return replace(row, verdict="secondary", values=excess, evidence=evidence)

    def neurons_beat_heads(self) -> list[Row]:
        in_context = at(self.cells, IN_CONTEXT)
        neuron = in_context[in_context["unit"].isin(["weights", "neurons"])]
        heads = in_context[in_context["unit"] == "heads"]
        out = []
        for (a_units, a_setting), a in by_units(neuron):
            for (b_units, b_setting), b in by_units(heads):
                primary = (a_units, b_units) == PAPER_PAIR
                (a_ok, note_a), (b_ok, note_b) = self.usable(a), self.usable(b)
                shared, paired = on_both(a_ok, b_ok)
                note = f"{len(shared)} cells usable for both ({a_units}: {note_a}; {b_units}: {note_b})"
                units, setting = f"{a_units} vs {b_units}", f"{a_setting} vs {b_setting}"
                row = Row(
                    2, units, setting, contrast="reduction difference", cells_note=note, primary=primary
                )
                row = replace(row, verdict=UNKNOWN if primary else "secondary")
                if shared.empty:
                    reason = "no cell usable for both methods (empty masks or no measurable baseline bias)"
                    out.append(replace(row, evidence=reason))
                    continue
                difference = self.pool.reduction(shared) - self.pool.reduction(paired)
                direction = side(*self.estimate(difference)[1:])
                evidence = (
                    f"pooled in-context reduction {a_units} {self._masked(shared)} vs {b_units} "
                    f"{self._masked(paired)}; difference {self._fmt(difference)}"
                    + ("" if primary else "; secondary pair, does not decide the claim")
                )
                verdict = {1: HOLDS, -1: FAILS, 0: UNKNOWN}[direction] if primary else "secondary"
                contrast = f"{a_units} minus {b_units} reduction"
                row = replace(row, verdict=verdict, contrast=contrast, cells=len(shared), evidence=evidence)
                out.append(replace(row, values=difference))
        if not any(row.primary for row in out):
            reason = "the run lacks the paper's pair of methods"
            out.append(Row(2, " vs ".join(PAPER_PAIR), "", contrast="reduction difference", evidence=reason))
        return out

    def generality(self) -> list[Row]:
        out = []
        for (units, setting), cells in by_units(self.cells):
            levels = {
                "variation": at(cells, LEVEL_VARIATION),
                "held-out variation": at(cells, LEVEL_LOO),
                "other context": at(cells, *OTHER_CONTEXT),
            }
            # the levels on the same evaluated variations, so that no level is pooled over easier ones
            shared = set.intersection(*(set(variations(self.usable(part)[0])) for part in levels.values()))
            # a bool array, never a list: an empty list would select no columns of an empty level
            levels = {
                name: part[np.array([k in shared for k in variations(part)], bool)]
                for name, part in levels.items()
            }
            excess = {name: self._excess(part) for name, part in levels.items()}
            missing = [name for name, (values, *_) in excess.items() if values is None]
            notes = "; ".join(f"{name}: {e[3]}" for name, e in excess.items())
            row = Row(3, units, setting, contrast="excess differences between levels", cells_note=notes)
            if missing:
                out.append(replace(row, evidence=f"no usable cells with a control at: {', '.join(missing)}"))
                continue
            names = list(excess)
            pairs = [(names[0], names[1]), (names[1], names[2])]
            differences = {
                f"{a} minus {b} (excess over control)": excess[a][0] - excess[b][0] for a, b in pairs
            }
            verdict = self._both(differences)
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
            row = replace(row, verdict=verdict, cells=sum(len(e[2]) for e in excess.values()))
            out += [replace(row, contrast=c, values=v, evidence=evidence) for c, v in differences.items()]
        return out

    def partly_general(self) -> list[Row]:
        reduction, out = self.pool.reduction, []
        for (units, setting), cells in by_units(self.cells):
            transfer, control, transfer_cells, note_t = self._excess(at(cells, *OTHER_CONTEXT))
            inside, note_i = self.usable(at(cells, IN_CONTEXT))
            notes = f"transfer: {note_t}; in context: {note_i}"
            row = Row(4, units, setting, contrast="transfer contrasts", cells_note=notes)
            if transfer is None:
                out.append(replace(row, evidence="no usable transfer cells with a control"))
                continue
            if inside.empty:
                out.append(replace(row, evidence="no usable in-context cells"))
                continue
            differences = {
                f"transfer minus {control} control": transfer,
                "in-context minus transfer": reduction(inside) - reduction(transfer_cells),
            }
            evidence = (
                f"pooled reduction in context {self._fmt(reduction(inside))}, in transfer "
                f"{self._fmt(reduction(transfer_cells))}, {control} control in transfer "
                f"{self._fmt(reduction(transfer_cells, control))}"
            )
            cells_used = len(transfer_cells) + len(inside)
            row = replace(row, verdict=self._both(differences), cells=cells_used, evidence=evidence)
            out += [replace(row, contrast=c, values=v) for c, v in differences.items()]
        return out

    def directions_beat_components(self) -> list[Row]:
        """Claim 5: per directions method and setting, its pooled reduction minus the best paper method's on
        the cells both can carry, at the held-out (cross) level (deciding) and in context (not deciding)."""
        directions = self.cells[self.cells["unit"] == "directions"]
        papers = self.cells[self.cells["units"].isin(PAPER_PAIR)]
        out = []
        for (units, setting), all_cells in by_units(directions):
            for level, label, primary in ((HELD_OUT, "held out", True), (IN_CONTEXT, "in context", False)):
                mine, note = self.usable(at(all_cells, level))
                at_level = at(papers, level)
                candidates, notes = {}, [f"{units}: {note}"]
                for (p_units, p_setting), part in at_level.groupby(["units", "setting"]):
                    p_ok, p_note = self.usable(part)
                    shared, paired = on_both(mine, p_ok)
                    notes.append(f"{p_units} ({p_setting}): {p_note}, {len(shared)} shared")
                    if not shared.empty:
                        candidates[p_units, p_setting] = (shared, paired, self.pool.reduction(paired))
                contrast = f"{units} minus best paper method reduction ({label})"
                row = Row(5, units, setting, contrast=contrast, cells_note="; ".join(notes), primary=primary)
                if candidates:
                    out.append(self._against_the_best(row, candidates, label))
                    continue
                reason = (
                    "the run lacks a paper method at this level"
                    if at_level.empty
                    else f"the run lacks {units} at this level"
                    if not (all_cells["generalisation"] == level).any()
                    else "no cell usable for both the direction and a paper method (empty masks or no "
                    "measurable baseline bias)"
                )
                out.append(replace(row, evidence=reason))
        return out

    def _against_the_best(self, row: Row, candidates: dict, label: str) -> Row:
        """Claim 5's `row` decided against the best paper method that shares cells with the direction
        (`candidates`: (units, setting) -> (the direction's shared cells, the method's, its reduction))."""
        # The best paper method is picked after seeing its point reduction on these very cells: the
        # selection can only favour the components, so it makes the claim harder to hold (conservative).
        best = max(candidates, key=lambda k: np.nan_to_num(candidates[k][2][0], nan=-np.inf))
        shared, paired, theirs = candidates[best]
        difference = self.pool.reduction(shared) - theirs
        # the damage gate of claim 1: a direction that removes the gap by wrecking answers does not win
        _, large, small, anomaly = self.anomaly(shared)
        others = ", ".join(
            f"{u} ({s}) {values[2][0]:+.2f} on {len(values[0])} cells"
            for (u, s), values in candidates.items()
            if (u, s) != best
        )
        evidence = (
            f"pooled reduction ({label}) {row.units} {self._masked(shared)} vs best paper method {best[0]} "
            f"({best[1]}) {self._masked(paired)}; difference {self._fmt(difference)}; best chosen by the "
            f"larger point reduction on the shared cells; other candidates: {others or 'none'}; the direction's "
            f"{anomaly}" + ("" if row.primary else "; within context, does not decide the claim")
        )
        contrast = f"{row.units} minus {best[0]} reduction ({label})"
        verdict = self._gated(difference, large, small)
        row = replace(row, verdict=verdict, contrast=contrast, evidence=evidence, cells=len(shared))
        return replace(row, values=difference)


def on_both(mine: pd.DataFrame, theirs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells of `mine` on a variation `theirs` has too, and those of `theirs` on them."""
    where = ["domain", "variation"]
    shared = mine.merge(theirs[where], on=where)
    return shared, theirs.merge(shared[where], on=where)


def findings(
    conditions: pd.DataFrame, names: pd.DataFrame, groups: Sequence[str], metrics: dict
) -> pd.DataFrame:
    """One row per contrast of each claim and unit/method (and setting): the claim's verdict, the contrast's
    estimate and interval, the cells it pools and those left out, and the numbers behind it. Claim 5 has rows
    only in a run with directions."""
    claims = Claims(conditions, Draws(names, groups, metrics), metrics["confidence"], metrics["seed"])
    rows = [
        *claims.pruning_works(),
        *claims.neurons_beat_heads(),
        *claims.generality(),
        *claims.partly_general(),
        *claims.directions_beat_components(),
    ]
    table = pd.DataFrame([row.record(metrics["confidence"]) for row in rows])
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
