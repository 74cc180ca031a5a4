"""The standalone HTML appendix: Jinja2 (autoescaping on), figures embedded as data URIs, tables from the
run's Parquet files, findings computed from them, provenance of every input."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from pathlib import Path

import jinja2
import pandas as pd

from .findings import ANOMALY_MARGIN, FAILS, HOLDS, UNKNOWN

TEMPLATE = Path(__file__).resolve().parents[2] / "report" / "appendix.html.j2"
VERDICT_CSS = {HOLDS: "holds", FAILS: "fails", UNKNOWN: "unknown"}
MEANING = {
    HOLDS: "every contrast of the claim has an interval that excludes 0 in the claimed direction",
    FAILS: "a contrast of the claim has an interval that excludes 0 against the claimed direction, or a rise of "
    "anomalous or invalid answers lies wholly above its margin",
    UNKNOWN: "the data cannot decide: an interval contains 0, or no cell could carry the claim",
    "secondary": "a pair other than the paper's, reported for comparison; it does not decide the claim",
}


def caption(path: str | Path) -> tuple[str, str]:
    """(title, text) of a caption file (reStructuredText, shared with the Snakemake report): its first line
    is the title, the rest the caption."""
    lines = Path(path).read_text().replace("\\|", "|").strip().splitlines()  # RST escapes a bar
    return lines[0].strip().rstrip("."), " ".join(line.strip() for line in lines[1:] if line.strip())


def embed(png: str | Path) -> str:
    return base64.b64encode(Path(png).read_bytes()).decode("ascii")


def cell(value) -> dict:
    """A table cell as text; numbers rounded for reading, flagged for right alignment."""
    if isinstance(value, bool) or value is None:
        return {"text": "" if value is None else str(value), "num": False}
    if isinstance(value, float):
        return {"text": "" if math.isnan(value) else f"{value:.3g}", "num": True}
    if isinstance(value, int):
        return {"text": str(value), "num": True}
    return {"text": str(value), "num": False}


def html_table(name: str, title: str, text: str, frame: pd.DataFrame, columns: Sequence[str]) -> dict:
    columns = [column for column in columns if column in frame.columns]
    rows = [[cell(value) for value in row] for row in frame[columns].astype(object).itertuples(index=False)]
    return {"name": name, "title": title, "caption": text, "columns": columns, "rows": rows}


def render(context: dict, template: Path = TEMPLATE) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template.parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(template.name).render(**context)


def findings_rows(table: pd.DataFrame) -> list[dict]:
    """One entry per claim, unit/method and setting: the verdict (coloured by verdict), what it means, the
    contrasts with their intervals and cells, and the evidence sentence."""
    out = []
    for _, part in table.groupby(["claim", "units", "setting"], sort=False):
        first = part.iloc[0]
        contrasts = [
            {
                "name": row["contrast"],
                "text": "n/a"
                if pd.isna(row["estimate"])
                else f"{row['estimate']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]",
            }
            for _, row in part.iterrows()
        ]
        out.append(
            {
                "claim": int(first["claim"]),
                "statement": first["statement"],
                "units": first["units"],
                "setting": first["setting"],
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
