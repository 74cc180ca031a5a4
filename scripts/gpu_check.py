"""The GPU check behind scripts/gpu-check.sh: a randomly initialised model of a named shape (Llama-3-8B's by
default, in bfloat16 on CUDA) run through the study's real workflow on a few prompts (one domain, two of its
variations, two names per group: 8 prompts), every model job once per scope, plus the export of a pruned
model; then one line per job: its wall time, peak resident memory and peak GPU memory.

No hub and no weights: the model is drawn at random on the device and saved where a `local` registry entry
reads it. CUDA_VISIBLE_DEVICES is honoured (torch sees only those devices). With SHAPE `tiny` it runs on the
CPU in float32 in about a minute: the test suite runs it that way, so the script is known to work the first
time a GPU is at hand.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from biasprune.logs import GPU_PEAK, RSS_PEAK  # noqa: E402 (the library is found through the path above)
from biasprune.synthetic import SHAPES, chatml_tokenizer, n_parameters, save_random_model  # noqa: E402

WORKFLOW_FILES = ("workflow", "config", "resources/prompts", "profiles")
MODEL = "check"
# The rules that load the model (what the check is for); every other job of the run is listed after them.
MODEL_RULES = (
    "model_check",
    "answers",
    "activations",
    "scores",
    "masks",
    "evaluate",
    "damage",
    "export_pruned",
)


def study_config(model_dir: Path, device: str, dtype: str, scopes=("variation", "loo", "domain")) -> dict:
    """The default study's config cut to 8 prompts of one domain (every scope but `cross`, which needs two
    domains), on the model of `model_dir`."""
    import yaml

    from biasprune.vocabulary import settings

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["models"] = [MODEL]
    config["model_registry"] = {
        MODEL: {
            "about": "A randomly initialised model of the checked shape (its answers are noise).",
            "source": "local",
            "path": str(model_dir),
            "device": device,
            "dtype": dtype,
            "gpus": 1 if device == "cuda" else 0,
        }
    }
    config["names"]["include"] = ["Emily", "Todd", "Lakisha", "Jamal"]
    config["domains"] = ["purchase"]
    config["variations"] = {"purchase": ["chair", "car"]}
    config["metrics"] |= {"bootstrap": 200}
    config["masks"] |= {"scopes": list(scopes), "random_scopes": ["domain"]}
    first = settings("weights", config["masks"]["weights"])[0]
    config["export"] = {"unit": "weights", "method": "wanda", "scope": "domain", "condition": "purchase"}
    config["export"]["setting"] = first
    return config


def job_table(workdir: Path) -> list[dict]:
    """One row per job that ran: rule, wildcards, seconds (Snakemake's benchmark), peak resident MB and peak
    GPU GiB (the lines its log ends with; the GPU's None where it used none). A log without the resident line
    falls back on the benchmark's sampled peak."""
    rows = []
    for bench in sorted((workdir / "benchmarks").rglob("*.tsv")):
        relative = bench.relative_to(workdir / "benchmarks").with_suffix("")
        rule, job = relative.parts[0], "/".join(relative.parts[1:])
        with open(bench) as handle:
            record = next(csv.DictReader(handle, delimiter="\t"))
        log = workdir / "logs" / relative.with_suffix(".log")
        text = log.read_text() if log.is_file() else ""
        gpu, rss = (re.findall(rf"{line} ([0-9.]+) GiB", text) for line in (GPU_PEAK, RSS_PEAK))
        sampled = float(record["max_rss"]) if record["max_rss"] != "NA" else float("nan")
        rows.append(
            {
                "rule": rule,
                "job": job,
                "s": float(record["s"]),
                "max_rss_mb": float(rss[-1]) * 1024 if rss else sampled,
                "gpu_gib": float(gpu[-1]) if gpu else None,
            }
        )
    order = {rule: i for i, rule in enumerate(MODEL_RULES)}
    return sorted(rows, key=lambda row: (order.get(row["rule"], len(order)), row["rule"], row["job"]))


def run_study(model_dir: Path, workdir: Path, device: str, dtype: str, cores: int, **config) -> int:
    """The one-domain study (`study_config`) on the model of `model_dir`, run by Snakemake in `workdir` (a copy
    of the workflow): every model job and the metrics over them, not the report (no model job feeds it
    differently). Returns Snakemake's exit status; `job_table(workdir)` lists the jobs."""
    import yaml

    for item in WORKFLOW_FILES:
        shutil.copytree(ROOT / item, workdir / item, dirs_exist_ok=True)
    (workdir / "config" / "gpu-check.yaml").write_text(
        yaml.safe_dump(study_config(model_dir, device, dtype, **config))
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    targets = [
        f"results/{MODEL}/{path}" for path in ("model_check.json", "metrics/conditions.parquet", "pruned")
    ]
    command = [str(snakemake), *targets, "--cores", str(cores), "--configfile", "config/gpu-check.yaml"]
    if device == "cuda":  # one model job on the GPU at a time (they declare gpu=1): each peak is its own
        command += ["--resources", "gpu=1"]
    return subprocess.run(command, cwd=workdir).returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shape", nargs="?", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--device", help="cuda or cpu (default: cuda, and cpu for the tiny shape)")
    parser.add_argument("--dtype", help="bfloat16 or float32 (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--workdir", type=Path, help="run here and keep it (default: a temporary folder)")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.shape == "tiny" else "cuda")
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        sys.exit(
            f"gpu-check: no CUDA device visible (CUDA_VISIBLE_DEVICES={visible}); "
            "`scripts/gpu-check.sh tiny` runs the same check on the CPU"
        )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="biasprune-gpu-check."))
    try:
        tokenizer = chatml_tokenizer(ROOT / "resources" / "prompts")
        where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
        count = n_parameters(args.shape, len(tokenizer))
        print(f"gpu-check: a random {args.shape} model ({count / 1e9:.2f}B parameters, {dtype}) on {where}")
        model_dir = save_random_model(
            workdir / "resources" / "synthetic" / args.shape,
            args.shape,
            tokenizer,
            dtype=dtype,
            device=device,
        )
        if device == "cuda":
            torch.cuda.empty_cache()  # the model was drawn here; the jobs load their own copy
        returncode = run_study(model_dir, workdir, device, dtype, args.cores)
        rows = job_table(workdir)
        print(f"{'rule':<20} {'job':<48} {'s':>8} {'peak RSS MB':>12} {'peak GPU GiB':>13}")
        for row in rows:
            gpu = "-" if row["gpu_gib"] is None else f"{row['gpu_gib']:.3f}"
            print(f"{row['rule']:<20} {row['job']:<48} {row['s']:>8.1f} {row['max_rss_mb']:>12.0f} {gpu:>13}")
        if returncode:
            print(
                f"gpu-check: FAILED (snakemake exit {returncode}); logs in {workdir}/logs",
                file=sys.stderr,
            )
            return 1
        ran = {row["rule"] for row in rows}
        missing = [rule for rule in MODEL_RULES if rule not in ran]
        if missing:
            print(f"gpu-check: FAILED: no job of {missing} ran", file=sys.stderr)
            return 1
        print(f"gpu-check: passed ({len(rows)} jobs)")
        return 0
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
