"""Every table a report page shows, in one registry: its anchor, title, caption and columns. The appendix shows
`baseline` and `transfer` of one model; the comparison shows the models' geometry, the baseline per domain and
per variation, the transfer cells and the placement by depth of several. Column lists name what a page shows
(a column the frame lacks, or a readout mass no row has, is left out: pages.html_table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ..weighting import MASSES
from .pages import html_table


@dataclass(frozen=True)
class Table:
    name: str  # the page's anchor
    title: str
    caption: str
    columns: tuple[str, ...] | None = None  # None: every column of the frame, in its order

    def shown(self, frame: pd.DataFrame) -> dict:
        """The table as the page shows it (pages.html_table)."""
        return html_table(self.name, self.title, self.caption, frame, self.columns)


def by_model(columns: Sequence[str]) -> tuple[str, ...]:
    """A long table's columns in the comparison: `model` first."""
    return ("model", *columns)


# A baseline row: where it is, its gap (signed SMD, interval, |SMD| and its permutation p), its invalid rates.
ROW = ("domain", "variation", "level")
GAP = ("smd", "smd_low", "smd_high", "measurable", "abs_smd", "abs_smd_p")
INVALID = ("invalid_rate_ref", "invalid_rate_focal")

# -- one model's appendix --------------------------------------------------------------------------------------
BASELINE = Table(
    "baseline",
    "Baseline bias",
    "Per variation and domain: group means, SMD with 95% CI, Mann-Whitney p, invalid rates, and the readout's "
    "own masses (mean per prompt: the expected readout's grid coverage, the exact readout's invalid and "
    "unexplored mass).",
    (*ROW, "mean_ref", "mean_focal", *GAP, "mwu_p", *INVALID, *MASSES),
)
TRANSFER = Table(
    "transfer",
    "Transfer matrix",
    "Per selection and evaluated domain: signed SMD with its 95% CI, relative reduction of |SMD| with its "
    "paired CI, the absolute change of |SMD|, each control's mean reduction, and the readout's masses under the "
    "mask (empty masks are marked, their numbers left blank).",
    (
        "unit",
        "method",
        "setting",
        "selection",
        "evaluated",
        "in_sample",
        "vacuous",
        "n_pruned",
        "share_pruned",
        "base_smd",
        "smd",
        "smd_low",
        "smd_high",
        "abs_change",
        "reduction",
        "reduction_low",
        "reduction_high",
        "random_reduction_mean",
        "matched_reduction_mean",
        "generic_reduction_mean",
        "kl",
        "invalid_rate",
        *MASSES,
    ),
)
APPENDIX = (BASELINE, TRANSFER)

# -- several models side by side -------------------------------------------------------------------------------
# The comparison's baseline rows (its baseline.csv and page): the groups and their sizes instead of the group
# means and masses of the appendix, which differ in scale from model to model.
COMPARISON_BASELINE_COLUMNS = (*ROW, "group_ref", "group_focal", "n_ref", "n_focal", *GAP, *INVALID)
GEOMETRY = ("architecture", "n_layers", "n_heads", "n_kv_heads", "d_model", "d_mlp", "n_parameters")
MODELS = Table("models", "Models", "", by_model(GEOMETRY))
BASELINE_BY_DOMAIN = Table(
    "baseline-by-domain",
    "Baseline bias per domain",
    "Per domain and model: the mean |SMD| over its variations, its permutation p (race labels permuted over "
    "names) and the variations whose signed-SMD interval excludes 0.",
)
BASELINE_ROWS = Table(
    "baseline",
    "Baseline bias per variation",
    "Per model, domain and variation: signed SMD with its 95% interval over names.",
    by_model(COMPARISON_BASELINE_COLUMNS),
)
TRANSFER_ROWS = Table(
    "transfer",
    "Transfer matrices",
    "Every cell of every model's transfer matrices (columns as in each model's appendix).",
    by_model(TRANSFER.columns),
)
PLACEMENT = Table(
    "placement",
    "Where the selected components sit",
    "Per unit and method, setting and relative-depth bin: each model's share of the components its masks "
    "select, pooled over the masks (the per-mask shares are in comparison/placement.csv).",
)
