"""The appendix figures, drawn from the metric tables (seaborn/matplotlib, colour-blind palette), each saved
as PNG and SVG. Pure plotting: every number shown comes from the tables passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .conditions import levels_table
from .io import atomic_path
from .vocabulary import IN_CONTEXT, LEVELS, MATCHED, RANDOM, units_label

PALETTE = "colorblind"

sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)


def save(figure, png: str | os.PathLike, svg: str | os.PathLike) -> None:
    """Write a figure as PNG (150 dpi) and SVG atomically, then close it."""
    for path, fmt in ((png, "png"), (svg, "svg")):
        with atomic_path(path) as tmp:
            figure.savefig(
                tmp,
                format=fmt,
                dpi=150,
                bbox_inches="tight",
                metadata={"Date": None} if fmt == "svg" else None,
            )
    plt.close(figure)


def baseline(table: pd.DataFrame):
    """SMD per variation with its 95% CI, grouped by domain; zero marked."""
    rows = table[table["level"] == "variation"].reset_index(drop=True)
    figure, axis = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    colours = dict(zip(rows["domain"].unique(), sns.color_palette(PALETTE), strict=False))
    labels = [f"{d}: {v}" for d, v in zip(rows["domain"], rows["variation"], strict=True)]
    for y, row in rows.iterrows():
        axis.errorbar(
            row["smd"],
            y,
            xerr=[[row["smd"] - row["smd_low"]], [row["smd_high"] - row["smd"]]],
            fmt="o",
            color=colours[row["domain"]],
            capsize=3,
        )
    axis.axvline(0, color="black", lw=1)
    axis.set_yticks(range(len(rows)), labels)
    axis.invert_yaxis()
    reference, focal = rows["group_ref"].iloc[0], rows["group_focal"].iloc[0]
    axis.set_xlabel(f"SMD ({reference} - {focal}) / pooled SD, 95% CI over names")
    return figure


def reference_control(frame: pd.DataFrame) -> str:
    """The control shown beside the masks: matched where the run has it, else uniform random."""
    matched = f"{MATCHED}_reduction_mean"
    return MATCHED if matched in frame and frame[matched].notna().any() else RANDOM


def before_after(conditions: pd.DataFrame):
    """|SMD| per evaluated domain and generalisation level: unpruned, pruned, and the reference control (mean
    over seeds); empty masks are left out (they measure nothing)."""
    rows = levels_table(conditions)
    rows = rows[~rows["vacuous"]]
    control = reference_control(rows)
    units = sorted(rows["units"].unique())
    figure, axes = plt.subplots(1, len(units), figsize=(4.2 * len(units), 4), sharey=True, squeeze=False)
    colours = sns.color_palette(PALETTE)
    for axis, unit in zip(axes[0], units, strict=True):
        part = rows[rows["units"] == unit]
        order = [name for name in LEVELS if name in set(part["generalisation"])]
        x = {name: i for i, name in enumerate(order)}
        for offset, (column, label, colour) in zip(
            (-0.22, 0.0, 0.22),
            (
                ("base_abs_smd", "unpruned", colours[7]),
                ("abs_smd", "pruned", colours[0]),
                (f"{control}_abs_smd_mean", f"{control} control", colours[1]),
            ),
            strict=True,
        ):
            xs = part["generalisation"].map(x) + offset
            axis.scatter(xs, part[column], s=18, color=colour, label=label, alpha=0.85)
        axis.set_xticks(range(len(order)), order, rotation=30, ha="right")
        axis.set_title(unit)
    axes[0][0].set_ylabel("mean |SMD| per evaluated domain")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    return figure


def transfer(table: pd.DataFrame):
    """Selection x evaluated domain heat maps of the relative reduction (CI in the cell; * = in-sample)."""
    table = table.assign(units=units_label(table["unit"], table["method"]) + "\n" + table["setting"])
    panels = sorted(table["units"].unique())
    height = 0.5 * table["selection"].nunique() + 1.5
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(8, height * len(panels)), squeeze=False, constrained_layout=True
    )
    axes = axes[:, 0]
    for axis, panel in zip(axes, panels, strict=True):
        transfer_panel(axis, table[table["units"] == panel])
        axis.set_title(panel)
    return figure


def transfer_panel(axis, part: pd.DataFrame, vmin: float = -1, vmax: float = 1, cbar: bool = True) -> None:
    """One transfer matrix (one unit, method and setting) as a heat map of the relative reduction, clipped to
    [-1, 1] and coloured on [vmin, vmax] around 0; each cell's text keeps its value and CI."""
    matrix = part.pivot_table(index="selection", columns="evaluated", values="reduction", aggfunc="first")
    labels = part.assign(
        text=[
            "empty\nmask"
            if empty
            else f"{r:.2f}{'*' if s else ''}\n[{lo:.2f}, {hi:.2f}]"
            if np.isfinite(r)
            else "n/a"
            for r, lo, hi, s, empty in zip(
                part["reduction"],
                part["reduction_low"],
                part["reduction_high"],
                part["in_sample"],
                part["vacuous"],
                strict=True,
            )
        ]
    ).pivot_table(index="selection", columns="evaluated", values="text", aggfunc="first")
    sns.heatmap(
        matrix.clip(-1, 1),
        annot=labels.reindex_like(matrix).fillna(""),
        fmt="",
        cmap="vlag_r",
        center=0,
        vmin=vmin,
        vmax=vmax,
        ax=axis,
        annot_kws={"fontsize": 7},
        cbar=cbar,
        cbar_kws={"label": "relative reduction of |SMD|"} if cbar else None,
    )
    axis.grid(False)
    axis.set_xlabel("evaluated domain")
    axis.set_ylabel("selected on")


def tradeoff(conditions: pd.DataFrame):
    """Bias reduction against damage (KL on neutral prompts; invalid-answer rate) for every mask and setting."""
    rows = levels_table(conditions)
    rows = rows[rows["generalisation"] == IN_CONTEXT]
    figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for axis, column, label in zip(
        axes,
        ("kl", "invalid_rate"),
        ("KL(unpruned ‖ pruned) on neutral prompts (nats)", "invalid-answer rate"),
        strict=True,
    ):
        sns.scatterplot(data=rows, x=column, y="reduction", hue="units", style="setting", ax=axis, s=40)
        axis.axhline(0, color="black", lw=0.8)
        axis.set_xlabel(label)
        if axis is not axes[-1]:
            axis.get_legend().remove()
    axes[0].set_ylabel("relative reduction of |SMD| (in-sample)")
    axes[-1].legend(fontsize=7, loc="best")
    return figure


def components(per_layer: pd.DataFrame, heads: pd.DataFrame):
    """Where the selected components sit: per layer (stacked by matrix for weights) for each unit and
    method, and the heads as a layer x head grid (how many domains select each head)."""
    units = sorted(per_layer["units"].unique())
    heads_panels = sorted(heads["units"].unique()) if len(heads) else []
    columns = len(units) + len(heads_panels)
    figure, axes = plt.subplots(1, columns, figsize=(4.3 * columns, 4), squeeze=False)
    axes = list(axes[0])
    for unit in units:
        axis = axes.pop(0)
        pivot = per_layer[per_layer["units"] == unit].pivot_table(
            index="layer", columns="part", values="count", aggfunc="sum"
        )
        pivot.fillna(0).plot.bar(stacked=True, ax=axis, width=0.85, legend=pivot.shape[1] > 1)
        axis.set_title(f"{unit}: selected per layer")
        axis.set_xlabel("layer")
        axis.set_ylabel("components (summed over domain masks)")
        axis.tick_params(axis="x", labelsize=6)
    for unit in heads_panels:
        axis = axes.pop(0)
        grid = heads[heads["units"] == unit].pivot_table(
            index="layer", columns="head", values="count", aggfunc="sum"
        )
        sns.heatmap(grid.fillna(0), cmap="mako_r", ax=axis, cbar_kws={"label": "domains selecting the head"})
        axis.set_title(f"{unit}: heads")
    return figure


def overlap(table: pd.DataFrame):
    """Jaccard overlap of the domains' masks, one panel per unit and method (a study of one domain has no
    pair to overlap: the figure says so)."""
    units = sorted(table["units"].unique())
    if not units:
        figure, axis = plt.subplots(figsize=(4, 1.2))
        axis.axis("off")
        axis.text(0.5, 0.5, "One domain: no two domains' masks to overlap.", ha="center", va="center")
        return figure
    figure, axes = plt.subplots(1, len(units), figsize=(4 * len(units), 3.6), squeeze=False)
    for axis, unit in zip(axes[0], units, strict=True):
        matrix = table[table["units"] == unit].pivot_table(
            index="a", columns="b", values="jaccard", aggfunc="first"
        )
        sns.heatmap(
            matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="mako_r", ax=axis, cbar=axis is axes[0][-1]
        )
        axis.set_title(unit)
        axis.set_xlabel("")
        axis.set_ylabel("")
    return figure


def units_by_level(conditions: pd.DataFrame):
    """Mean relative reduction per generalisation level, one line per unit and method (the paper's second
    and third claims side by side), with the random controls dashed."""
    rows = levels_table(conditions)
    rows = rows[~rows["vacuous"]]
    control = f"{reference_control(rows)}_reduction_mean"
    summary = rows.groupby(["units", "generalisation"], as_index=False)[["reduction", control]].mean()
    summary["order"] = summary["generalisation"].map(LEVELS.index)
    summary = summary.sort_values("order")
    figure, axis = plt.subplots(figsize=(7, 4))
    colours = dict(zip(sorted(summary["units"].unique()), sns.color_palette(PALETTE), strict=False))
    for unit, part in summary.groupby("units"):
        axis.plot(part["order"], part["reduction"], "o-", color=colours[unit], label=unit)
        axis.plot(part["order"], part[control], "x--", color=colours[unit], alpha=0.6)
    axis.axhline(0, color="black", lw=0.8)
    axis.set_xticks(range(len(LEVELS)), LEVELS, rotation=25, ha="right")
    axis.set_ylabel(f"mean relative reduction of |SMD|\n(dashed: {control.split('_')[0]} controls)")
    axis.legend(fontsize=8)
    return figure


def jaccard(masks: Sequence[tuple[str, Mapping]]) -> pd.DataFrame:
    """Pairwise Jaccard overlap of boolean masks ({key: bool tensor}), as long rows a, b, jaccard. Key by key:
    each mask's key is read (a lazy mask decodes it) once, whatever the number of masks."""
    inter, union = np.zeros((len(masks), len(masks))), np.zeros((len(masks), len(masks)))
    for key in masks[0][1]:
        values = [mask[key] for _, mask in masks]
        for i, first in enumerate(values):
            for j, second in enumerate(values):
                inter[i, j] += int((first & second).sum())
                union[i, j] += int((first | second).sum())
    return pd.DataFrame(
        [
            {"a": a, "b": b, "jaccard": inter[i, j] / union[i, j] if union[i, j] else np.nan}
            for i, (a, _) in enumerate(masks)
            for j, (b, _) in enumerate(masks)
        ]
    )


def layer_part(key: str) -> tuple[int, str]:
    """The layer a mask key names and the part of it: "3" (a unit's layer, or the residual layer a direction
    edit acts on) is (3, ""), "3.q_proj" (a layer's matrix) is (3, "q_proj"). How every placement reads where
    a component sits: the figures here and the comparison's relative depths."""
    layer, _, part = key.partition(".")
    return int(layer), part


def placement(files: Sequence[str | os.PathLike]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From `domain`-scope mask files: components per layer (and matrix), heads per (layer, head), and the
    Jaccard overlap of the domains' masks; the first setting of each file."""
    from .maskfile import load_masks

    per_layer, heads, overlaps = [], [], []
    for path in files:
        manifest, masks = load_masks(path)
        unit, units, setting = (
            manifest["unit"],
            units_label(manifest["unit"], manifest["method"]),
            manifest["settings"][0],
        )
        chosen = [(condition, masks[condition, setting]) for condition in manifest["conditions"]]
        for _, mask in chosen:
            for key, value in mask.items():
                layer, part = layer_part(key)
                per_layer.append(
                    {"units": units, "layer": layer, "part": part or unit, "count": int(value.sum())}
                )
                if unit == "heads":
                    heads += [
                        {"units": units, "layer": layer, "head": head, "count": int(flag)}
                        for head, flag in enumerate(value.tolist())
                    ]
        if len(chosen) > 1:
            overlaps.append(jaccard(chosen).assign(units=units))
    overlap_table = (
        pd.concat(overlaps, ignore_index=True)
        if overlaps
        else pd.DataFrame(columns=["a", "b", "jaccard", "units"])
    )
    return (
        pd.DataFrame(per_layer),
        pd.DataFrame(heads, columns=["units", "layer", "head", "count"]),
        overlap_table,
    )
