"""The name-bootstrap draws the findings rest on, and what a quantity's draws summarise to.

Draw 0 takes every name once (the point); every other draw is the study's one name draw (metrics.name_draws:
names resampled within each race group, the same names in every domain and table). `Draws` holds each
series' |SMD| and pooled answer counts per draw; `Pooled` pools them over cells (the reduction, the change of
|SMD|, the anomalous share and lost valid mass), resampling a seeded control's seeds inside every draw. A
per-draw quantity then summarises to its point and percentile interval, the side of 0 that interval lies on,
and a bootstrap p (Holm's adjustment for a family of them). Which cells, controls and thresholds a claim uses
is the business of `evidence` (the shared rules) and `findings` (the claims), not this module's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .metrics import group_names, measurable, name_draws
from .stats import percentile_interval, smd_from_sums
from .vocabulary import BASE, PRUNED

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


class Pooled:
    """Per-draw quantities pooled over cells (rows with the SERIES keys but control and seed) of masks and
    controls: `controls` (a conditions table's control rows) says which seeds each control has on each cell,
    and a seeded control's quantity is resampled over its seeds in every draw (seed_weights, from `seed`)."""

    def __init__(self, draws: Draws, controls: pd.DataFrame, seed: int = 0):
        self.draws, self.seed = draws, seed
        self.seeds = {
            control: part.groupby([*SERIES[:5], "domain", "variation"])["seed"].apply(
                lambda s: sorted(set(s))
            )
            for control, part in controls.groupby("control")
        }

    @staticmethod
    def cell_key(c) -> tuple:
        """A cell's index in `seeds`: its SERIES keys but control and seed."""
        return (c.unit, c.method, c.scope, c.condition, c.setting, c.domain, c.variation)

    @staticmethod
    def key(cell, control=PRUNED, seed=-1) -> tuple:
        """A cell's series under a mask (PRUNED) or one seed of a control."""
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

    def seeds_of(self, cell, control: str) -> list[int]:
        return self.seeds[control][self.cell_key(cell)]

    def over_seeds(self, per_seed: list[np.ndarray]) -> np.ndarray:
        """A control's per-draw quantity from its seeds' (seed_weights: resampled in every draw)."""
        stacked = np.stack(per_seed)
        weights = seed_weights(len(per_seed), stacked.shape[1], self.seed)
        return np.einsum("bk,kb->b", weights, stacked)

    def reduction(self, cells: pd.DataFrame, control: str = PRUNED) -> np.ndarray:
        """Pooled reduction 1 - sum|SMD| / sum|SMD_base| per draw (a control: over its resampled seeds)."""
        abs_smd = self.draws.abs_smd
        base = sum(abs_smd[Draws.base_key(c.domain, c.variation)] for c in cells.itertuples())
        if control == PRUNED:
            return 1 - sum(abs_smd[self.key(c)] for c in cells.itertuples()) / base
        seeds = self.seeds_of(next(cells.itertuples()), control)
        pruned = [sum(abs_smd[self.key(c, control, s)] for c in cells.itertuples()) for s in seeds]
        return 1 - self.over_seeds(pruned) / base

    def change(self, cells: pd.DataFrame) -> np.ndarray:
        """Mean absolute change of |SMD| per cell (pruned minus unpruned), per draw."""
        return np.mean(
            [
                self.draws.abs_smd[self.key(c)] - self.draws.abs_smd[Draws.base_key(c.domain, c.variation)]
                for c in cells.itertuples()
            ],
            axis=0,
        )

    def rates(
        self, cells: pd.DataFrame, collapse: float, control: str = PRUNED
    ) -> tuple[np.ndarray, np.ndarray]:
        """(anomalous share, valid-mass loss) per draw pooled over the cells: valid answers farther outside
        the unpruned band than it is wide (all of a cell's whose spread collapsed below `collapse` of the
        unpruned spread) among valid ones, and the probability not read as a valid number among all.
        control="base": the unpruned model's own; a control: over its resampled seeds."""
        bases = [Draws.base_key(c.domain, c.variation) for c in cells.itertuples()]
        if control == BASE:
            series = [bases]
        elif control == PRUNED:
            series = [[self.key(c) for c in cells.itertuples()]]
        else:
            seeds = self.seeds_of(next(cells.itertuples()), control)
            series = [[self.key(c, control, s) for c in cells.itertuples()] for s in seeds]
        anomalous, lost = [], []
        for keys in series:
            far, valid, mass_valid, mass_total = 0, 0, 0, 0
            for key, base in zip(keys, bases, strict=True):
                counts = self.draws.counts[key]
                collapsed = spread(counts) < collapse * spread(self.draws.counts[base])
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
        return self.over_seeds(anomalous), self.over_seeds(lost)


def spread(counts: np.ndarray) -> np.ndarray:
    """Per draw, the SD of a series' valid answers from its pooled (count, sum, sum of squares)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts[:, 1] / counts[:, 0]
        return np.sqrt(np.maximum(counts[:, 2] / counts[:, 0] - mean**2, 0))


def seed_weights(count: int, draws: int, seed: int) -> np.ndarray:
    """(draws, count) weights of a control's seeds: draw 0 the mean over its seeds, every other draw a
    resample of the seeds with replacement, so the control's own randomness enters each interval."""
    rng = np.random.default_rng([seed, count])
    resampled = rng.multinomial(count, np.full(count, 1 / count), size=draws - 1)
    return np.vstack([np.ones(count), resampled]) / count


def point_interval(values: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Point (draw 0) and percentile interval (the other draws) of a per-draw quantity."""
    return float(values[0]), *percentile_interval(values[1:], confidence)


def interval_text(values: np.ndarray, confidence: float) -> str:
    """`point [low, high]` of a per-draw quantity, to two decimals."""
    point, low, high = point_interval(values, confidence)
    return f"{point:+.2f} [{low:+.2f}, {high:+.2f}]"


def summary(values: np.ndarray | None, confidence: float) -> tuple[float, float, float, float]:
    """(point, low, high, bootstrap p) of a per-draw quantity; all NaN without one (None)."""
    if values is None:
        return (np.nan,) * 4
    return *point_interval(values, confidence), bootstrap_p(values)


def side(low: float, high: float) -> int:
    """+1 if the interval lies above 0, -1 if below, 0 if it contains 0 or is undefined."""
    return 1 if low > 0 else -1 if high < 0 else 0


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
