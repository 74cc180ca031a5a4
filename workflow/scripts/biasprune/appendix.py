"""The standalone HTML appendix: Jinja2 (autoescaping on), figures embedded as data URIs, tables from the
run's Parquet files, findings computed from them, provenance of every input."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from pathlib import Path

import jinja2
import pandas as pd

from .findings import FAILS, HOLDS, MAX_INVALID_RISE, MIN_INLIER_RATIO

TEMPLATE = Path(__file__).resolve().parents[2] / "report" / "appendix.html.j2"
VERDICT_CSS = {HOLDS: "holds", FAILS: "fails"}


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
    return [row | {"css": VERDICT_CSS.get(row["verdict"], "unknown")} for row in table.to_dict("records")]


THRESHOLDS = {"invalid": f"{MAX_INVALID_RISE:.0%} points", "inliers": f"{MIN_INLIER_RATIO:.0%}"}
