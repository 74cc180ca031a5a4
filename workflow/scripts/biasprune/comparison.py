"""Several models side by side: baseline bias, findings, transfer matrices and where the selected components
sit by relative depth, as long tables (`model` first, models in the order of config `models`), figures drawn
on one scale for every model, and a standalone HTML page. Nothing is pooled across models: each model's
estimates, intervals and verdicts are its own (an inconclusive verdict stays inconclusive), placed beside
the others'.

Relative depth: a model of n blocks runs from its input (0) to its output (1); block l spans [l/n, (l+1)/n]
and a component of it (a weight entry, an MLP unit, a head) sits at its middle, (l + 0.5)/n; the residual
stream entering block l, where a direction edit acts, sits at l/n (l = n: the stream leaving the last
block). The depth axis is cut into DEPTH_BINS equal bins, closed on the left (the last also on the right);
with an odd number of bins no block's middle falls on a bin edge, for any n."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import figures
from .appendix import REPORT, TABLE_COLUMNS, findings_rows, html_table, render, shown_figures, stamped
from .io import sha256_file
from .vocabulary import Condition, units_label

TEMPLATE = REPORT / "comparison.html.j2"
DEPTH_BINS = 5
# The comparison's figures, in order; the caption of each is report/comparison_<name>.rst.
FIGURES = ("baseline", "transfer", "placement")
BASELINE_COLUMNS = [
    "domain",
    "variation",
    "level",
    "group_ref",
    "group_focal",
    "n_ref",
    "n_focal",
    "smd",
    "smd_low",
    "smd_high",
    "measurable",
    "abs_smd",
    "abs_smd_p",
    "invalid_rate_ref",
    "invalid_rate_focal",
]
GEOMETRY = ["architecture", "n_layers", "n_heads", "n_kv_heads", "d_model", "d_mlp", "n_parameters"]


@dataclass(frozen=True)
class ModelRun:
    """What the comparison reads of one model's run: its metric tables, the manifests of the masks that show
    where components sit (one per unit and method), and its model check (`n_layers`: the depth scale)."""

    baseline: pd.DataFrame
    transfer: pd.DataFrame
    findings: pd.DataFrame
    manifests: Sequence[dict]
    check: dict


# Tables --------------------------------------------------------------------------------------------------


def _long(frames: Mapping[str, pd.DataFrame], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The models' tables stacked in the models' order, `model` first (the key, over any model column)."""
    parts = []
    for model, frame in frames.items():
        frame = frame.drop(columns="model", errors="ignore")
        if columns is not None:
            frame = frame[[column for column in columns if column in frame.columns]]
        parts.append(frame.assign(model=model)[["model", *frame.columns]])
    return pd.concat(parts, ignore_index=True)


def depth_bin(layer: int, n_layers: int, residual: bool = False, bins: int = DEPTH_BINS) -> int:
    """The relative-depth bin of a block's component ((layer + 0.5) / n_layers) or of a residual layer
    (layer / n_layers), in integers so that no rounding moves a depth across an edge."""
    if not 0 <= layer < n_layers + residual:
        kind = "residual layer" if residual else "layer"
        raise ValueError(f"{kind} {layer} outside a model of {n_layers} layers")
    index = layer * bins // n_layers if residual else (2 * layer + 1) * bins // (2 * n_layers)
    return min(index, bins - 1)


def relative_depth(layer: int, n_layers: int, residual: bool = False) -> float:
    """Where a block's components (its middle) or a residual layer sit between input (0) and output (1)."""
    return layer / n_layers if residual else (layer + 0.5) / n_layers


def placement_table(runs: Mapping[str, ModelRun], bins: int = DEPTH_BINS) -> pd.DataFrame:
    """Per model, unit and method, setting and mask (condition) of the placement scope, and relative-depth
    bin: the components the mask selects there (`count`, read from the manifest's counts per layer) and
    their share of all it selects (empty where it selects nothing)."""
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for model, run in runs.items():
        n_layers = int(run.check["n_layers"])
        for manifest in run.manifests:
            residual = manifest["unit"] == "directions"
            for condition, entry in manifest["conditions"].items():
                domain = Condition.parse(condition, manifest["scope"]).domain
                for setting in manifest["settings"]:
                    per_bin = np.zeros(bins, dtype=np.int64)
                    for key, count in entry["counts"][setting].items():
                        per_bin[depth_bin(figures.layer_part(key)[0], n_layers, residual, bins)] += count
                    total = int(per_bin.sum())
                    rows += [
                        {
                            "model": model,
                            "unit": manifest["unit"],
                            "method": manifest["method"],
                            "units": units_label(manifest["unit"], manifest["method"]),
                            "setting": setting,
                            "scope": manifest["scope"],
                            "condition": condition,
                            "domain": domain,
                            "bin": f"{edges[i]:.1f}-{edges[i + 1]:.1f}",
                            "depth_low": edges[i],
                            "depth_high": edges[i + 1],
                            "count": int(per_bin[i]),
                            "share": per_bin[i] / total if total else np.nan,
                        }
                        for i in range(bins)
                    ]
    return pd.DataFrame(rows)


def pooled_placement(placement: pd.DataFrame) -> pd.DataFrame:
    """Per model, unit and method, setting and bin: the share of the components that all the scope's masks
    select together (counts summed over the masks), what the placement figure draws."""
    keys = ["model", "units", "setting"]
    pooled = placement.groupby([*keys, "bin", "depth_low", "depth_high"], sort=False, as_index=False)[
        "count"
    ].sum()
    total = pooled.groupby(keys, sort=False)["count"].transform("sum")
    pooled["share"] = (pooled["count"] / total).where(total > 0)
    return pooled


def comparison_tables(runs: Mapping[str, ModelRun]) -> dict[str, pd.DataFrame]:
    """The comparison's long tables: `baseline` (every variation and domain row with its SMD, interval and
    permutation p), `findings` (every contrast of every claim with its estimate, interval and the model's own
    verdict), `transfer` (every cell of every transfer matrix) and `placement` (placement_table)."""
    return {
        "baseline": _long({model: run.baseline for model, run in runs.items()}, BASELINE_COLUMNS),
        "findings": _long({model: run.findings for model, run in runs.items()}),
        "transfer": _long({model: run.transfer for model, run in runs.items()}),
        "placement": placement_table(runs),
    }


# Figures -------------------------------------------------------------------------------------------------


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


def baseline_figure(baseline: pd.DataFrame):
    """Signed SMD per variation with its interval, one panel per model on one shared y axis, coloured by
    domain (the same colours in every panel)."""
    rows = baseline[baseline["level"] == "variation"]
    models = list(dict.fromkeys(rows["model"]))
    domains = list(dict.fromkeys(rows["domain"]))
    colours = dict(zip(domains, sns.color_palette(figures.PALETTE), strict=False))
    width = max(3.0, 0.45 * rows.groupby("model").size().max() + 1.2)
    figure, axes = plt.subplots(
        1, len(models), figsize=(width * len(models), 4.2), sharey=True, squeeze=False
    )
    limits = shared_limits(rows[["smd", "smd_low", "smd_high"]].to_numpy(float))
    for axis, model in zip(axes[0], models, strict=True):
        part = rows[rows["model"] == model].reset_index(drop=True)
        for x, row in part.iterrows():
            colour = colours[row["domain"]]
            axis.plot([x, x], [row["smd_low"], row["smd_high"]], color=colour, lw=1.5)
            axis.plot(x, row["smd"], "o", color=colour)
        axis.axhline(0, color="black", lw=1)
        labels = [f"{d}: {v}" for d, v in zip(part["domain"], part["variation"], strict=True)]
        axis.set_xticks(range(len(part)), labels, rotation=35, ha="right", fontsize=7)
        axis.set_xlim(-0.6, len(part) - 0.4)
        axis.set_ylim(*limits)
        axis.set_title(model)
    reference, focal = rows["group_ref"].iloc[0], rows["group_focal"].iloc[0]
    axes[0][0].set_ylabel(f"SMD ({reference} - {focal}) / pooled SD\n95% CI over names")
    return figure


def transfer_figure(transfer: pd.DataFrame):
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
            figures.transfer_panel(axis, part, vmin=vmin, vmax=vmax, cbar=False)
            axis.set_title(f"{model}\n{panel}", fontsize=9)
            drawn.append(axis)
    if drawn:
        figure.colorbar(
            drawn[0].collections[0], ax=axes.ravel().tolist(), label="relative reduction of |SMD|"
        )
    return figure


def placement_figure(placement: pd.DataFrame):
    """Share of the selected components per relative-depth bin (pooled over the scope's masks), one panel per
    unit, method and setting, one bar per model; x on [0, 1] and y shared by every panel."""
    pooled = pooled_placement(placement)
    pooled["panel"] = pooled["units"] + "\n" + pooled["setting"]
    models = list(dict.fromkeys(pooled["model"]))
    panels = list(dict.fromkeys(pooled["panel"]))
    colours = dict(zip(models, sns.color_palette(figures.PALETTE), strict=False))
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
                color=colours[model],
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


DRAW = {"baseline": baseline_figure, "transfer": transfer_figure, "placement": placement_figure}


# HTML ----------------------------------------------------------------------------------------------------


def findings_side_by_side(findings: pd.DataFrame, models: Sequence[str]) -> list[dict]:
    """One entry per claim, unit/method, setting (and deciding or not), with each model's verdict and
    contrasts as the appendix shows them (None where the model's run has no such entry)."""
    per_model = {
        model: {
            (row["claim"], row["units"], row["setting"], row["primary"]): row
            for row in findings_rows(findings[findings["model"] == model])
        }
        for model in models
    }
    keys = list(dict.fromkeys(key for model in models for key in per_model[model]))
    out = []
    for key in keys:
        first = next(per_model[model][key] for model in models if key in per_model[model])
        out.append(
            {
                "claim": first["claim"],
                "statement": first["statement"],
                "units": first["units"],
                "setting": first["setting"],
                "primary": first["primary"],
                "models": [per_model[model].get(key) for model in models],
            }
        )
    return out


def baseline_by_domain(baseline: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Per domain, each model's mean |SMD| over the variations, its permutation p and how many variations
    have an interval that excludes 0."""
    domains = baseline[baseline["level"] == "domain"].set_index(["model", "domain"])
    variations = baseline[baseline["level"] == "variation"]
    measurable = variations.groupby(["model", "domain"])["measurable"].agg(["sum", "size"])
    out = pd.DataFrame({"domain": list(dict.fromkeys(baseline["domain"]))})
    for model in models:
        keys = [(model, domain) for domain in out["domain"]]
        out[f"{model}: mean |SMD|"] = [domains["abs_smd"].get(k, np.nan) for k in keys]
        out[f"{model}: p"] = [domains["abs_smd_p"].get(k, np.nan) for k in keys]
        out[f"{model}: measurable variations"] = [
            f"{int(measurable.loc[k, 'sum'])} of {int(measurable.loc[k, 'size'])}"
            if k in measurable.index
            else ""
            for k in keys
        ]
    return out


def placement_by_model(placement: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Per unit and method, setting and depth bin, each model's share of the selected components (pooled)."""
    pooled = pooled_placement(placement)
    wide = pooled.pivot_table(index=["units", "setting", "bin"], columns="model", values="share", sort=False)
    wide = wide.reindex(columns=[m for m in models if m in wide.columns])
    wide.columns = [f"{model}: share" for model in wide.columns]
    return wide.reset_index()


def provenance(inputs: Mapping[str, str | os.PathLike], snakemake_version: str) -> dict:
    """Run date, the sha256 of every input table and manifest, and the report libraries' versions."""
    return stamped({label: sha256_file(path) for label, path in inputs.items()}, snakemake_version)


def comparison_html(
    tables: Mapping[str, pd.DataFrame],
    checks: Mapping[str, dict],
    figures_png: Iterable[tuple[str, str | Path]],
    provenance_rows: Mapping[str, str],
) -> str:
    """The comparison page: the models (in the order of `checks`), the figures with their captions, the
    baseline per domain, the findings side by side, the transfer table and the placement by depth."""
    models = list(checks)
    geometry = pd.DataFrame([{"model": m, **{k: checks[m].get(k) for k in GEOMETRY}} for m in models])
    return render(
        {
            "models": models,
            "geometry": html_table("models", "Models", "", geometry),
            "figures": shown_figures(figures_png, "comparison_"),
            "depth_bins": DEPTH_BINS,
            "baseline": html_table(
                "baseline-by-domain",
                "Baseline bias per domain",
                "Per domain and model: the mean |SMD| over its variations, its permutation p (race labels "
                "permuted over names) and the variations whose signed-SMD interval excludes 0.",
                baseline_by_domain(tables["baseline"], models),
            ),
            "baseline_rows": html_table(
                "baseline",
                "Baseline bias per variation",
                "Per model, domain and variation: signed SMD with its 95% interval over names.",
                tables["baseline"],
                ["model", *BASELINE_COLUMNS],
            ),
            "findings": findings_side_by_side(tables["findings"], models),
            "transfer": html_table(
                "transfer",
                "Transfer matrices",
                "Every cell of every model's transfer matrices (columns as in each model's appendix).",
                tables["transfer"],
                ["model", *TABLE_COLUMNS["transfer"]],
            ),
            "placement": html_table(
                "placement",
                "Where the selected components sit",
                "Per unit and method, setting and relative-depth bin: each model's share of the components "
                "its masks select, pooled over the masks (the per-mask shares are in comparison/placement.csv).",
                placement_by_model(tables["placement"], models),
            ),
            "provenance": provenance_rows,
        },
        TEMPLATE,
    )
