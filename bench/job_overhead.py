"""The fixed cost of a job: the time each rule script takes to import what it imports at the top, before it
does any work, against a bare interpreter start measured in the same run (the ratio is what to compare across
machines). Every Snakemake job of the study pays it once; CI runs a few hundred tiny jobs.

    .venv/bin/python bench/job_overhead.py [SCRIPTS_FOLDER]   # default: this checkout's workflow/scripts

Each figure is the fastest of `--repeats` fresh interpreters (the least disturbed by other work)."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def top_imports(script: Path) -> str:
    """The script's module-level import statements, as one line of Python."""
    tree = ast.parse(script.read_text())
    return "; ".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))


def fastest(code: str, folder: Path, repeats: int) -> float:
    """Seconds of the fastest of `repeats` fresh interpreters running `code` in `folder`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=folder, check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scripts", nargs="?", type=Path, default=ROOT / "workflow" / "scripts")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    reference = fastest("pass", args.scripts, args.repeats)
    rows = []
    for script in sorted(args.scripts.glob("*.py")):
        code = f"import sys; sys.path.insert(0, '.'); {top_imports(script)}"
        rows.append((fastest(code, args.scripts, args.repeats), script.stem))
    print(f"bare interpreter: {reference:.2f} s (the reference)")
    print(f"{'rule script':<20} {'import s':>9} {'x bare':>7}")
    for seconds, name in sorted(rows, reverse=True):
        print(f"{name:<20} {seconds:>9.2f} {seconds / reference:>7.1f}")
    total = sum(seconds for seconds, _ in rows)
    print(f"{'sum':<20} {total:>9.2f} {total / reference:>7.1f}")


if __name__ == "__main__":
    main()
