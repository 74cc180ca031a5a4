"""What every page of the report shares: the Jinja2 environment (autoescaping on), table cells, a table as a
page shows it, figure captions (reStructuredText files shared with Snakemake's report), figures embedded as
data URIs, and the provenance stamp."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import jinja2
import pandas as pd

from ..weighting import MASSES

REPORT = Path(__file__).resolve().parents[3] / "report"
# The table and plotting libraries of the report jobs' env, whose versions every page's provenance names.
REPORT_LIBRARIES = ("pandas", "numpy", "matplotlib", "seaborn", "jinja2")


def caption(path: str | Path) -> tuple[str, str]:
    """(title, text) of a caption file (reStructuredText, shared with the Snakemake report): its first line
    is the title, the rest the caption."""
    lines = Path(path).read_text().replace("\\|", "|").strip().splitlines()  # RST escapes a bar
    return lines[0].strip().rstrip("."), " ".join(line.strip() for line in lines[1:] if line.strip())


def embed(png: str | Path) -> str:
    return base64.b64encode(Path(png).read_bytes()).decode("ascii")


def shown_figures(figures: Iterable[tuple[str, str | Path]], prefix: str = "") -> list[dict]:
    """(name, PNG) pairs as a page shows them: the caption of report/<prefix><name>.rst, the PNG embedded."""
    shown = []
    for name, png in figures:
        title, text = caption(REPORT / f"{prefix}{name}.rst")
        shown.append({"name": name, "title": title, "caption": text, "data": embed(png)})
    return shown


def cell(value) -> dict:
    """A table cell as text; numbers rounded for reading, flagged for right alignment."""
    if isinstance(value, bool) or value is None:
        return {"text": "" if value is None else str(value), "num": False}
    if isinstance(value, float):
        return {"text": "" if math.isnan(value) else f"{value:.3g}", "num": True}
    if isinstance(value, int):
        return {"text": str(value), "num": True}
    return {"text": str(value), "num": False}


def html_table(
    name: str, title: str, text: str, frame: pd.DataFrame, columns: Sequence[str] | None = None
) -> dict:
    """A table as the page shows it: `columns` of `frame` (by default all of them, in its order) that it has;
    a readout mass the readout does not have (all empty) is left out."""
    shown = frame.columns if columns is None else columns
    columns = [c for c in shown if c in frame and not (c in MASSES and frame[c].isna().all())]
    rows = [[cell(value) for value in row] for row in frame[columns].astype(object).itertuples(index=False)]
    return {"name": name, "title": title, "caption": text, "columns": columns, "rows": rows}


def render(context: dict, template: str = "appendix.html.j2") -> str:
    """The page report/<template> filled with `context` (an undefined name is an error, not a blank)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(REPORT),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(template).render(**context)


def stamped(inputs: Mapping[str, str], snakemake_version: str) -> dict:
    """A page's provenance: the run date, then `inputs` (what it was made from), then the versions of the
    report libraries (this job's env) and of Snakemake."""
    return {
        "run_date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **inputs,
        **{f"version/{name}": version(name) for name in REPORT_LIBRARIES},
        "version/snakemake": snakemake_version,
    }
