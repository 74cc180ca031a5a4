"""What every claim of a run rests on (findings.Claims adds the claims; findings' docstring states the method):
the verdict words and thresholds, the cells a verdict may use and the control it is decided against, the
pooled numbers behind it with their intervals, and claims 1 and 5's damage gate (`anomaly`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .conditions import pooled
from .draws import SERIES, Draws, Pooled, interval_text, point_interval, side
from .vocabulary import BASE, GENERIC, PRUNED, RANDOM, generalisation, units_label

HOLDS, FAILS, UNKNOWN = "holds", "does not hold", "inconclusive"
# "Without a large rise in anomalous outputs" (claims 1 and 5): the rise, over the unpruned model's own value,
# of the share of anomalous answers (valid values farther outside the unpruned 5-95% band than it is wide,
# weighting.FENCE, or every answer of a cell whose spread collapsed below COLLAPSE of the unpruned spread) and
# of the loss of valid probability mass (invalid answers, the expected readout's grid coverage, the exact
# readout's unexplored mass), each at most this.
ANOMALY_MARGIN = 0.05
COLLAPSE = 0.1
# The controls claims 1, 3 and 4 are decided against, the first the run evaluated on every cell: the
# group-blind generic control, then uniform random draws. A seeded control needs MIN_SEEDS seeds, resampled
# inside every bootstrap draw, so that its own randomness is in the interval. The matched control (drawn
# from the pool the mask was chosen from) is a specificity row of claim 1, Holm-corrected with the others.
DECIDING_CONTROLS = (GENERIC, RANDOM)
MIN_SEEDS = 2


def by_units(cells: pd.DataFrame):
    """Each method's and setting's cells, in the run's order."""
    return cells.groupby(["units", "setting"], sort=False)


def at(cells: pd.DataFrame, *levels: str) -> pd.DataFrame:
    """The cells of the given generalisation levels."""
    return cells[cells["generalisation"].isin(levels)]


def variations(cells: pd.DataFrame):
    """Each cell's (domain, variation)."""
    return zip(cells["domain"], cells["variation"], strict=True)


class Evidence:
    """The cells of one run's claims, from its conditions table (which cells exist, their level, their share
    pruned, KL) and the per-draw summaries (pooled over cells by draws.Pooled): which cells and control a
    verdict rests on, and the numbers behind it."""

    def __init__(self, conditions: pd.DataFrame, draws: Draws, confidence: float, seed: int = 0):
        self.confidence = confidence
        cells = conditions[
            (conditions["level"] == "variation") & (conditions["control"] == PRUNED) & ~pooled(conditions)
        ].copy()
        cells["generalisation"] = [
            generalisation(s, bool(i)) for s, i in zip(cells["scope"], cells["in_sample"], strict=True)
        ]
        cells["units"] = units_label(cells["unit"], cells["method"])
        cells["measurable"] = [draws.measurable(d, v, confidence) for d, v in variations(cells)]
        self.cells = cells.dropna(subset=["generalisation"])
        self.pool = Pooled(draws, conditions[conditions["control"] != PRUNED], seed)
        self.kl = conditions[conditions["level"] == "domain"].groupby([*SERIES[:5], "control"])["kl"].mean()

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
        why, keys = [], [Pooled.cell_key(c) for c in cells.itertuples()]
        for control in choices:
            seeds = self.pool.seeds.get(control)
            if seeds is None or not len(cells) or not all(key in seeds.index for key in keys):
                why.append(f"no {control} control on every cell")
                continue
            count = min(len(seeds[key]) for key in keys)
            if control != GENERIC and count < MIN_SEEDS:
                why.append(f"the {control} control has {count} seed (its randomness needs {MIN_SEEDS})")
                continue
            return control, ""
        return None, "; ".join(why)

    def _excess(self, cells: pd.DataFrame):
        """(excess over the deciding control per draw, control, cells used, note) of one level's cells."""
        kept, note = self.usable(cells)
        control, why = self.control_of(kept)
        if kept.empty or control is None:
            return None, control, kept, f"{note}; {why}" if why else note
        return self.pool.reduction(kept) - self.pool.reduction(kept, control), control, kept, note

    def anomaly(self, cells: pd.DataFrame) -> tuple[dict, bool, bool, str]:
        """(rises over the unpruned model's own value per draw, large, small, text) of the cells' anomalous
        share and valid-mass loss: large when a rise's interval lies above ANOMALY_MARGIN, small when both lie
        at or below it."""
        anomalous, lost = self.pool.rates(cells, COLLAPSE)
        own_anomalous, own_lost = self.pool.rates(cells, COLLAPSE, BASE)
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
        return point_interval(values, self.confidence)

    def _fmt(self, values: np.ndarray) -> str:
        return interval_text(values, self.confidence)

    def _gated(self, values: np.ndarray, large: bool, small: bool) -> str:
        """The verdict of a contrast with claim 1's damage gate: it holds above 0 only with a small rise in
        anomalies and fails below 0 or with a large one."""
        direction = side(*self.estimate(values)[1:])
        return HOLDS if direction > 0 and small else FAILS if direction < 0 or large else UNKNOWN

    def _both(self, differences: dict) -> str:
        """The verdict of a claim of two parts: it holds if both contrasts lie above 0 and fails if one lies
        below."""
        directions = [side(*self.estimate(values)[1:]) for values in differences.values()]
        return HOLDS if all(d > 0 for d in directions) else FAILS if min(directions) < 0 else UNKNOWN

    def _share(self, cells: pd.DataFrame) -> float:
        return float(cells["share_pruned"].mean()) if len(cells) else np.nan

    def _kl(self, cells: pd.DataFrame, control: str = PRUNED) -> float:
        keys = {(c.unit, c.method, c.scope, c.condition, c.setting, control) for c in cells.itertuples()}
        values = [self.kl.get(k, np.nan) for k in keys]
        return float(np.nanmean(values)) if values and np.isfinite(values).any() else np.nan

    def _masked(self, cells: pd.DataFrame) -> str:
        """A pooled reduction with its interval, and the share its masks prune and their KL."""
        reduction = self._fmt(self.pool.reduction(cells))
        return f"{reduction} (share pruned {self._share(cells):.4f}, KL {self._kl(cells):.3f})"
