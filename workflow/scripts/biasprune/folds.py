"""Cross-fitting over names: which names select a mask and which evaluate it.

With `names.folds: k` (default 2) each group's names are split into k folds by a seeded rule: within each
race, names are ordered gender by gender, shuffled within a gender by `names.fold_seed`, and dealt to the
folds in turn (so each fold holds about 1/k of every race x gender). Scores and masks are made once on all
names (the mask a deployer would use: exported, placed in the figures, measured for damage) and once per fold
on the names outside that fold; a fold's masks are evaluated on that fold's names only, so every name is
evaluated once per condition, under masks that never saw it (for k = 2: selected on one half, read on the
other, and the halves swapped). `names.folds: 1` is the paper's design: the same names select and evaluate.

A fold's tensors sit in the same mask file as the all-names masks, under the condition `{condition}@{fold}`
(`fold_key`); the manifest's `folds` maps each fold to the names it evaluates (`names`) and its conditions.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

ALL_NAMES = ""  # the fold label of what all names selected (no cross-fitting, or the deployed masks)


def assign_folds(
    names: Iterable[Mapping[str, str]], groups: Sequence[str], folds: int, seed: int
) -> dict[str, list[str]]:
    """{fold label: the names it holds out, i.e. evaluates} ({} for one fold: the same names select and
    evaluate). A fold's masks are selected on every other name.

    `names`: rows with name, race and gender. Within each group, names are ordered by gender (then name),
    shuffled within each gender by `seed`, and dealt to the folds A, B, ... in turn, the deal running on
    from one gender to the next."""
    if folds <= 1:
        return {}
    rng = np.random.default_rng(seed)
    labels = list(string.ascii_uppercase[:folds])
    out: dict[str, list[str]] = {label: [] for label in labels}
    rows = list(names)
    for group in groups:
        dealt = 0
        for gender in sorted({row["gender"] for row in rows if row["race"] == group}):
            chosen = sorted(row["name"] for row in rows if row["race"] == group and row["gender"] == gender)
            for index in rng.permutation(len(chosen)):
                out[labels[dealt % folds]].append(chosen[index])
                dealt += 1
    return {label: sorted(selected) for label, selected in out.items()}


def design(folds: int) -> str:
    """Which names selected and which evaluated the masks, in words (tables and the appendix)."""
    if folds <= 1:
        return "same names: the names that selected a mask evaluate it (the paper's design)"
    others = "the other fold" if folds == 2 else f"the other {folds - 1} folds"
    return f"cross-fitted over {folds} folds of names: each name read under masks selected on {others}"


def fold_key(condition: str, fold: str) -> str:
    """The mask-file condition of a fold's mask (the condition itself for the all-names mask)."""
    return f"{condition}@{fold}" if fold else condition


def fold_conditions(manifest: dict, fold: str) -> dict:
    """The conditions of one fold of a manifest (`ALL_NAMES`: the all-names masks)."""
    return manifest["folds"][fold]["conditions"] if fold else manifest["conditions"]


def evaluation_folds(manifest: dict) -> dict[str, frozenset[str] | None]:
    """{fold: the names its masks are evaluated on}: the folds of a cross-fitted manifest, else the all-names
    masks on every name ({"": None})."""
    folds = manifest.get("folds") or {}
    if not folds:
        return {ALL_NAMES: None}
    return {fold: frozenset(entry["names"]) for fold, entry in folds.items()}


def without(labels: pd.DataFrame, held_out: frozenset) -> pd.DataFrame:
    """Prompt labels whose held-out names count in no group (race ""), so that every score aggregates the
    other names' prompts only."""
    return labels.assign(race=labels["race"].where(~labels["name"].isin(held_out), ""))


def held_out(folds: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """{fold: the names it holds out} for all names (`ALL_NAMES`: none) and each fold: what each set of masks
    is selected without."""
    return {fold: frozenset(names) for fold, names in {ALL_NAMES: (), **folds}.items()}


def per_fold(folds: Mapping[str, Sequence[str]], compute: Callable[[frozenset], pa.Table]) -> pa.Table:
    """`compute(held_out)` for all names (nothing held out) and for each fold (its names held out: what its
    masks are selected on), stacked with a `fold` column."""
    parts = []
    for fold, names in held_out(folds).items():
        table = compute(names)
        parts.append(table.append_column("fold", pa.array([fold] * table.num_rows, pa.string())))
    return pa.concat_tables(parts)
