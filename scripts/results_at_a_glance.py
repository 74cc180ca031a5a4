"""Write the "results at a glance" page from a finished run's tables, so that no number on it is typed by hand.

    .venv/bin/python scripts/results_at_a_glance.py [RUN_DIR] [--model KEY] [--out docs/results.md]

RUN_DIR is the folder the study ran in (default: here). The page names the tables it was written from with
their sha256, the commit that wrote the findings (recorded in the findings table by its job), the Snakemake
run's wall time (from the Snakemake logs: first to last timestamp of every invocation that finished a job),
every primary verdict with its contrast and interval, and every baseline gap with its interval.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from biasprune.io import read_provenance, sha256_file, source_commit  # noqa: E402 (the library is found through the path above)

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def snakemake_wall_s(run: Path) -> tuple[float, int]:
    """(seconds, invocations): the summed first-to-last timestamp span of every Snakemake log in `run` that
    finished a job (a dry run or a run with nothing to do adds nothing)."""
    total, runs = 0.0, 0
    for log in sorted((run / ".snakemake" / "log").glob("*.snakemake.log")):
        text = log.read_text(errors="replace")
        if "Finished jobid" not in text and "Finished job " not in text:
            continue
        stamps = [
            datetime.strptime(" ".join(match.group(1).split()), "%a %b %d %H:%M:%S %Y")
            for match in map(STAMP.match, text.splitlines())
            if match
        ]
        if stamps:
            total += (stamps[-1] - stamps[0]).total_seconds()
            runs += 1
    return total, runs


def commit_cell(provenance: dict, run: Path) -> str:
    """The commit the findings job recorded; for a run made before it recorded one, the run folder's
    checkout now, said so."""
    if provenance.get("commit"):
        return f"`{provenance['commit']}` (the checkout that wrote the findings)"
    now = source_commit(run / "workflow" / "Snakefile")
    return f"`{now}` (the run folder's checkout now; not recorded by the run)" if now else "not recorded"


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s"


def interval(estimate: float, low: float, high: float) -> tuple[str, str]:
    """The estimate and its interval as the page prints them (two decimals, signed); '—' where undefined."""
    if pd.isna(estimate):
        return "—", "—"
    bounds = "—" if pd.isna(low) or pd.isna(high) else f"[{low:+.2f}, {high:+.2f}]"
    return f"{estimate:+.2f}", bounds


def page(run: Path, model: str) -> str:
    metrics = run / "results" / model / "metrics"
    findings_path, baseline_path = metrics / "findings.parquet", metrics / "baseline.parquet"
    findings, baseline = pd.read_parquet(findings_path), pd.read_parquet(baseline_path)
    provenance = read_provenance(findings_path)
    wall, runs = snakemake_wall_s(run)
    lines = [
        "# Results at a glance",
        "",
        "Written by `scripts/results_at_a_glance.py` from a finished run's tables; do not edit by hand (run the",
        "script again after a run). Methods and the meaning of each verdict: [methods](methods.md).",
        "",
        "| | |",
        "|---|---|",
        f"| model | `{model}` |",
        f"| commit | {commit_cell(provenance, run)} |",
        f"| written | {provenance.get('written', 'not recorded')} (the findings table) |",
        f"| Snakemake wall time | {minutes(wall)} ({runs} invocation(s), from the Snakemake logs) |",
        f"| findings | `results/{model}/metrics/findings.parquet`, sha256 `{sha256_file(findings_path)}` |",
        f"| baseline | `results/{model}/metrics/baseline.parquet`, sha256 `{sha256_file(baseline_path)}` |",
        "",
        "## Primary verdicts",
        "",
        "| claim | units | setting | verdict | contrast | estimate | interval (or why there is none) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in findings[findings["primary"]].itertuples():
        estimate, bounds = interval(row.estimate, row.low, row.high)
        if pd.isna(row.estimate):  # no number to show: say why instead
            bounds = row.evidence
        cells = (row.claim, row.units, row.setting, row.verdict, row.contrast, estimate, bounds)
        lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
    variations = baseline[baseline["level"] == "variation"]
    lines += [
        "",
        "## Baseline gaps",
        "",
        f"{int(variations['measurable'].sum())} of {len(variations)} variations have a measurable gap (the "
        "signed SMD's interval excludes 0; SMD = White minus Black over the pooled SD).",
        "",
        "| domain | variation | SMD | interval | measurable |",
        "|---|---|---|---|---|",
    ]
    for row in variations.itertuples():
        estimate, bounds = interval(row.smd, row.smd_low, row.smd_high)
        lines.append(
            f"| {row.domain} | {row.variation} | {estimate} | {bounds} | {'yes' if row.measurable else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", type=Path, default=Path("."), help="the folder the study ran in")
    parser.add_argument("--model", help="the model key (default: the only one under results/)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args(argv)
    models = sorted(path.parent.parent.name for path in args.run.glob("results/*/metrics/findings.parquet"))
    model = args.model or (models[0] if len(models) == 1 else None)
    if model is None:
        parser.error(f"{args.run}: expected one model's findings under results/*/metrics/, found {models}")
    args.out.write_text(page(args.run, model))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
