"""Every figure of the report, drawn from the tables passed in (seaborn/matplotlib, colour-blind palette), each
saved as PNG and SVG: the appendix's (APPENDIX: the `figure` rule's wildcard, workflow/rules/common.smk
FIGURES) and the comparison's (COMPARISON: several models on one scale). Pure plotting: every number shown
comes from the tables passed in; the caption of each is workflow/report/<name>.rst (the comparison's
comparison_<name>.rst)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..conditions import levels_table
from ..io import atomic_path
from ..vocabulary import IN_CONTEXT, LEVELS, MATCHED, RANDOM, units_label
from .placement import DEPTH_BINS

PALETTE = "colorblind"

sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)
# SVG element ids (clip paths, markers, images) from a fixed salt, not at random: a figure redrawn from the same
# table is the same file, byte for byte.
matplotlib.rcParams["svg.hashsalt"] = "biasprune"


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


def colours(keys) -> dict:
    """One colour of the palette per key, in the keys' order (the same key, the same colour in every panel)."""
    return dict(zip(keys, sns.color_palette(PALETTE), strict=False))


def baseline(table: pd.DataFrame):
    """SMD per variation with its 95% CI, grouped by domain; zero marked."""
    rows = table[table["level"] == "variation"].reset_index(drop=True)
    figure, axis = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    colour = colours(rows["domain"].unique())
    labels = [f"{d}: {v}" for d, v in zip(rows["domain"], rows["variation"], strict=True)]
    for y, row in rows.iterrows():
        axis.errorbar(
            row["smd"],
            y,
            xerr=[[row["smd"] - row["smd_low"]], [row["smd_high"] - row["smd"]]],
            fmt="o",
            color=colour[row["domain"]],
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
    palette = sns.color_palette(PALETTE)
    for axis, unit in zip(axes[0], units, strict=True):
        part = rows[rows["units"] == unit]
        order = [name for name in LEVELS if name in set(part["generalisation"])]
        x = {name: i for i, name in enumerate(order)}
        for offset, (column, label, colour) in zip(
            (-0.22, 0.0, 0.22),
            (
                ("base_abs_smd", "unpruned", palette[7]),
                ("abs_smd", "pruned", palette[0]),
                (f"{control}_abs_smd_mean", f"{control} control", palette[1]),
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
    colour = colours(sorted(summary["units"].unique()))
    for unit, part in summary.groupby("units"):
        axis.plot(part["order"], part["reduction"], "o-", color=colour[unit], label=unit)
        axis.plot(part["order"], part[control], "x--", color=colour[unit], alpha=0.6)
    axis.axhline(0, color="black", lw=0.8)
    axis.set_xticks(range(len(LEVELS)), LEVELS, rotation=25, ha="right")
    axis.set_ylabel(f"mean relative reduction of |SMD|\n(dashed: {control.split('_')[0]} controls)")
    axis.legend(fontsize=8)
    return figure


# -- several models on one scale (the comparison) ---------------------------------------------------------


def shared_limits(values, pad: float = 0.05) -> tuple[float, float]:
    """An axis range holding every finite value and 0, widened by `pad` of its span on both sides."""
    values = np.asarray(values, dtype=float)
    values = np.append(values[np.isfinite(values)], 0.0)
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    return low - pad * span, high + pad * span


def colour_range(transfer: pd.DataFrame) -> tuple[float, float]:
    """The one colour scale of every model's transfer matrices: the lowest and highest reduction over all of
    them, clipped to [-1, 1] as each matrix is drawn ([-1, 1] where no cell has one)."""
    values = transfer["reduction"].clip(-1, 1).to_numpy(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return -1.0, 1.0
    low, high = float(values.min()), float(values.max())
    return (low - 0.5, high + 0.5) if low == high else (low, high)


def baseline_by_model(baseline: pd.DataFrame):
    """Signed SMD per variation with its interval, one panel per model on one shared y axis, coloured by
    domain (the same colours in every panel)."""
    rows = baseline[baseline["level"] == "variation"]
    models = list(dict.fromkeys(rows["model"]))
    domains = list(dict.fromkeys(rows["domain"]))
    colour = colours(domains)
    width = max(3.0, 0.45 * rows.groupby("model").size().max() + 1.2)
    figure, axes = plt.subplots(
        1, len(models), figsize=(width * len(models), 4.2), sharey=True, squeeze=False
    )
    limits = shared_limits(rows[["smd", "smd_low", "smd_high"]].to_numpy(float))
    for axis, model in zip(axes[0], models, strict=True):
        part = rows[rows["model"] == model].reset_index(drop=True)
        for x, row in part.iterrows():
            axis.plot([x, x], [row["smd_low"], row["smd_high"]], color=colour[row["domain"]], lw=1.5)
            axis.plot(x, row["smd"], "o", color=colour[row["domain"]])
        axis.axhline(0, color="black", lw=1)
        labels = [f"{d}: {v}" for d, v in zip(part["domain"], part["variation"], strict=True)]
        axis.set_xticks(range(len(part)), labels, rotation=35, ha="right", fontsize=7)
        axis.set_xlim(-0.6, len(part) - 0.4)
        axis.set_ylim(*limits)
        axis.set_title(model)
    reference, focal = rows["group_ref"].iloc[0], rows["group_focal"].iloc[0]
    axes[0][0].set_ylabel(f"SMD ({reference} - {focal}) / pooled SD\n95% CI over names")
    return figure


def transfer_by_model(transfer: pd.DataFrame):
    """Each model's transfer matrices (columns: models; rows: unit, method and setting), every one coloured on
    the same range (colour_range) with one colour bar."""
    table = transfer.assign(
        panel=units_label(transfer["unit"], transfer["method"]) + "\n" + transfer["setting"]
    )
    models = list(dict.fromkeys(table["model"]))
    panels = sorted(table["panel"].unique())
    vmin, vmax = colour_range(table)
    height = 0.5 * table["selection"].nunique() + 1.6
    figure, axes = plt.subplots(
        len(panels),
        len(models),
        figsize=(6.5 * len(models) + 1, height * len(panels)),
        squeeze=False,
        constrained_layout=True,
    )
    drawn = []
    for row, panel in zip(axes, panels, strict=True):
        for axis, model in zip(row, models, strict=True):
            part = table[(table["model"] == model) & (table["panel"] == panel)]
            if part.empty:
                axis.set_axis_off()
                axis.set_title(f"{model}: not run\n{panel}", fontsize=8)
                continue
            transfer_panel(axis, part, vmin=vmin, vmax=vmax, cbar=False)
            axis.set_title(f"{model}\n{panel}", fontsize=9)
            drawn.append(axis)
    if drawn:
        figure.colorbar(
            drawn[0].collections[0], ax=axes.ravel().tolist(), label="relative reduction of |SMD|"
        )
    return figure


def placement_by_depth(pooled: pd.DataFrame):
    """Share of the selected components per relative-depth bin (pooled over the scope's masks:
    placement.pooled_depths), one panel per unit, method and setting, one bar per model; x on [0, 1] and y
    shared by every panel."""
    pooled = pooled.assign(panel=pooled["units"] + "\n" + pooled["setting"])
    models = list(dict.fromkeys(pooled["model"]))
    panels = list(dict.fromkeys(pooled["panel"]))
    colour = colours(models)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.8), sharex=True, sharey=True, squeeze=False
    )
    shares = pooled["share"].to_numpy(float)
    top = float(np.nanmax(shares)) if np.isfinite(shares).any() else 1.0
    for axis, panel in zip(axes[0], panels, strict=True):
        part = pooled[pooled["panel"] == panel]
        for index, model in enumerate(models):
            own = part[part["model"] == model]
            if own.empty:  # the model's run has no such masks
                continue
            width = (own["depth_high"] - own["depth_low"]) / (len(models) + 1)
            axis.bar(
                own["depth_low"] + width * (index + 1),
                own["share"].fillna(0),
                width=width,
                color=colour[model],
                label=model,
            )
        axis.set_xlim(0, 1)
        axis.set_ylim(0, top * 1.05)
        axis.set_xticks(np.linspace(0, 1, DEPTH_BINS + 1))
        axis.set_title(panel, fontsize=9)
        axis.set_xlabel("relative depth (0: input, 1: output)")
    axes[0][0].set_ylabel("share of the selected components")
    axes[0][-1].legend(fontsize=7)
    return figure


# -- the registries ------------------------------------------------------------------------------------------
# The appendix's figures by name: (what the job reads: its `table`, or the `masks` whose placement.mask_placement
# (per layer, heads, overlap) it draws; the drawing).
APPENDIX = {
    "baseline": ("table", baseline),
    "transfer": ("table", transfer),
    "before_after": ("table", before_after),
    "tradeoff": ("table", tradeoff),
    "units": ("table", units_by_level),
    "components": ("masks", lambda placed: components(placed[0], placed[1])),
    "overlap": ("masks", lambda placed: overlap(placed[2])),
}
# The comparison's figures, in the page's order, by the comparison table each draws.
COMPARISON = {"baseline": baseline_by_model, "transfer": transfer_by_model, "placement": placement_by_depth}
