"""Several models side by side: baseline bias, findings, transfer matrices and where the selected components
sit by relative depth, as long tables (`model` first, models in the order of config `models`), figures drawn
on one scale for every model, and a standalone HTML page. Nothing is pooled across models: each model's
estimates, intervals and verdicts are its own (an inconclusive verdict stays inconclusive), placed beside
the others'. How relative depth is measured: placement.py; the figures: figures.COMPARISON."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import sha256_file
from . import tables as shown
from .appendix import findings_rows
from .pages import render, shown_figures, stamped
from .placement import DEPTH_BINS, depth_table, pooled_depths


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


def placement_table(runs: Mapping[str, ModelRun]) -> pd.DataFrame:
    """Per model, unit and method, setting, mask of the placement scope and relative-depth bin: the components
    the mask selects there and their share (placement.depth_table, each model on its own depth scale)."""
    return depth_table({model: (int(run.check["n_layers"]), run.manifests) for model, run in runs.items()})


def comparison_tables(runs: Mapping[str, ModelRun]) -> dict[str, pd.DataFrame]:
    """The comparison's long tables: `baseline` (every variation and domain row with its SMD, interval and
    permutation p), `findings` (every contrast of every claim with its estimate, interval and the model's own
    verdict), `transfer` (every cell of every transfer matrix) and `placement` (placement_table)."""
    return {
        "baseline": _long(
            {model: run.baseline for model, run in runs.items()}, shown.COMPARISON_BASELINE_COLUMNS
        ),
        "findings": _long({model: run.findings for model, run in runs.items()}),
        "transfer": _long({model: run.transfer for model, run in runs.items()}),
        "placement": placement_table(runs),
    }


def figure_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """What each of the comparison's figures (figures.COMPARISON) draws: the placement pooled over each scope's
    masks once (placement.pooled_depths), which the page's placement table reads too."""
    return {
        "baseline": tables["baseline"],
        "transfer": tables["transfer"],
        "placement": pooled_depths(tables["placement"]),
    }


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


def placement_by_model(pooled: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """Per unit and method, setting and depth bin, each model's share of the selected components (pooled over
    the masks: placement.pooled_depths)."""
    wide = pooled.pivot_table(index=["units", "setting", "bin"], columns="model", values="share", sort=False)
    wide = wide.reindex(columns=[m for m in models if m in wide.columns])
    wide.columns = [f"{model}: share" for model in wide.columns]
    return wide.reset_index()


def provenance(inputs: Mapping[str, str | os.PathLike], snakemake_version: str) -> dict:
    """Run date, the sha256 of every input table and manifest, and the report libraries' versions."""
    return stamped({label: sha256_file(path) for label, path in inputs.items()}, snakemake_version)


def comparison_html(
    tables: Mapping[str, pd.DataFrame],
    pooled: pd.DataFrame,
    checks: Mapping[str, dict],
    figures_png: Iterable[tuple[str, str | Path]],
    provenance_rows: Mapping[str, str],
) -> str:
    """The comparison page: the models (in the order of `checks`), the figures with their captions, the
    baseline per domain, the findings side by side, the transfer table and the placement by depth (`pooled`:
    figure_tables' placement)."""
    models = list(checks)
    geometry = pd.DataFrame([{"model": m, **{k: checks[m].get(k) for k in shown.GEOMETRY}} for m in models])
    return render(
        {
            "models": models,
            "geometry": shown.MODELS.shown(geometry),
            "figures": shown_figures(figures_png, "comparison_"),
            "depth_bins": DEPTH_BINS,
            "baseline": shown.BASELINE_BY_DOMAIN.shown(baseline_by_domain(tables["baseline"], models)),
            "baseline_rows": shown.BASELINE_ROWS.shown(tables["baseline"]),
            "findings": findings_side_by_side(tables["findings"], models),
            "transfer": shown.TRANSFER_ROWS.shown(tables["transfer"]),
            "placement": shown.PLACEMENT.shown(placement_by_model(pooled, models)),
            "provenance": provenance_rows,
        },
        "comparison.html.j2",
    )
