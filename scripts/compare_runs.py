"""Whether two finished runs of one config made the same tables and figures: every Parquet table's contents
(its metadata aside: that holds the run's commit and day), every CSV and PNG byte for byte, every SVG byte for
byte once matplotlib's element ids are numbered in order (a figure drawn before svg.hashsalt was set named its
clip paths, markers and images at random; ids nothing refers to are dropped). The HTML pages are left out: they stamp the run's date.

    python scripts/compare_runs.py BEFORE AFTER

BEFORE and AFTER are run folders (each holds results/ and reports/) or folders above one, such as a pytest
--basetemp of the tiny chain (tests/test_tiny_chain.py). Prints each file that differs or is missing and a
count; exits 1 if any differs."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

SVG_ID = re.compile(r'(id="|#)((?:image|[pm])[0-9a-f]{10})\b')


def svg_text(path: Path) -> str:
    """An SVG with matplotlib's ids renamed in order of first appearance; an id nothing refers to (an
    embedded image's: random before the salt, the same for two equal images since) is dropped."""
    text = path.read_text()
    referred = {m.group(2) for m in SVG_ID.finditer(text) if m.group(1) == "#"}
    ids: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        if m.group(2) not in referred:
            return m.group(1)
        return m.group(1) + ids.setdefault(m.group(2), f"id{len(ids)}")

    return SVG_ID.sub(rename, text)


def run_folder(folder: Path) -> Path:
    """The run under `folder`: the one folder holding both results/ and reports/."""
    runs = {p.parent for p in Path(folder).glob("**/results") if (p.parent / "reports").is_dir()}
    if len(runs) != 1:
        raise SystemExit(f"{folder}: expected one run folder (results/ beside reports/), found {len(runs)}")
    return runs.pop()


def outputs(run: Path) -> set[Path]:
    tables = {p.relative_to(run) for p in run.glob("results/**/*.parquet")}
    return tables | {
        p.relative_to(run) for p in run.glob("reports/**/*") if p.suffix in (".csv", ".png", ".svg")
    }


def same(a: Path, b: Path) -> bool:
    if a.suffix == ".parquet":
        x, y = pd.read_parquet(a), pd.read_parquet(b)
        return x.columns.tolist() == y.columns.tolist() and x.equals(y)
    if a.suffix == ".svg":
        return svg_text(a) == svg_text(b)
    return a.read_bytes() == b.read_bytes()


def compare(before: Path, after: Path) -> list[str]:
    """One line per output that is missing on either side or differs."""
    a, b = run_folder(before), run_folder(after)
    first, second = outputs(a), outputs(b)
    lines = [f"missing after: {rel}" for rel in sorted(first - second)]
    lines += [f"new after: {rel}" for rel in sorted(second - first)]
    lines += [f"differs: {rel}" for rel in sorted(first & second) if not same(a / rel, b / rel)]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    lines = compare(args.before, args.after)
    total = len(outputs(run_folder(args.before)) | outputs(run_folder(args.after)))
    print("\n".join([*lines, f"{total - len(lines)} of {total} outputs identical"]))
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
