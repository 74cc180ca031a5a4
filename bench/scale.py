"""Memory and time of every model job as the model grows.

The one-domain study of scripts/gpu_check.py (8 purchase prompts: two variations, two names per group;
weights/wanda and heads/name_attention; masks, evaluations and damage at the `domain` scope; the export of
a pruned model) run by Snakemake, one job at a time, on the embedded model and on randomly initialised Llama
models of growing size, float32 on this CPU. For each model job it prints the peak resident memory over the
model's own bytes (the safetensors files), the allowance above the model (peak minus the model's bytes) and
the wall seconds per prompt. The reference in the same run is the smallest model: the goal is that the ratio
does not grow with the model (so the allowance does not grow faster than the model).

    .venv/bin/python bench/scale.py [--shapes smollm2-135m 0.5b 1b 2b] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common import ROOT, embedded_folder

sys.path.insert(0, str(ROOT / "scripts"))
from gpu_check import MODEL_RULES, job_table, run_study

from biasprune.synthetic import chatml_tokenizer, n_parameters, save_random_model

PROMPTS = 8  # gpu_check.study_config: 2 variations x 4 names

parser = argparse.ArgumentParser()
parser.add_argument("--shapes", nargs="+", default=["smollm2-135m", "0.5b", "1b", "2b"])
parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
args = parser.parse_args()

root = args.keep or Path(tempfile.mkdtemp(prefix="biasprune-scale."))
models = {"embedded": embedded_folder()}
tokenizer = chatml_tokenizer(ROOT / "resources" / "prompts")
for shape in args.shapes:
    folder = root / "models" / shape
    if not (folder / "config.json").is_file():
        save_random_model(folder, shape, tokenizer)
    models[shape] = folder

results = {}
for name, folder in models.items():
    model_bytes = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
    workdir = root / "runs" / name
    if run_study(folder.resolve(), workdir, "cpu", "float32", 1, scopes=["domain"]):
        sys.exit(f"scale: the study on {name} failed; logs in {workdir}/logs")
    peak, seconds = defaultdict(float), defaultdict(list)
    for row in job_table(workdir):
        if row["rule"] in MODEL_RULES:
            peak[row["rule"]] = max(peak[row["rule"]], row["max_rss_mb"] * 2**20)
            seconds[row["rule"]].append(row["s"])
    results[name] = (model_bytes, peak, seconds)
    parameters = n_parameters(name, len(tokenizer)) if name != "embedded" else model_bytes // 4
    print(f"{name}: {parameters / 1e9:.2f}B parameters, {model_bytes / 2**30:.2f} GiB of float32", flush=True)

print(f"\n{'job':<14}" + "".join(f"{name:>26}" for name in results))
print(f"{'':<14}" + "".join(f"{'peak/model  allow GiB  s/prompt':>26}" for _ in results))
for rule in MODEL_RULES:
    cells = []
    for model_bytes, peak, seconds in results.values():
        ratio, allowance = peak[rule] / model_bytes, (peak[rule] - model_bytes) / 2**30
        per_prompt = sum(seconds[rule]) / len(seconds[rule]) / PROMPTS
        cells.append(f"{ratio:>10.2f} {allowance:>10.2f} {per_prompt:>9.2f}")
    print(f"{rule:<14}" + "".join(f"{cell:>26}" for cell in cells))
names = list(results)
worst = (
    max(
        results[names[-1]][1][rule]
        / results[names[-1]][0]
        / (results[names[1]][1][rule] / results[names[1]][0])
        for rule in MODEL_RULES
    )
    if len(names) > 2
    else float("nan")
)
print(
    f"\npeak/model of the largest against the smallest random model, worst job: {worst:.2f}x (goal: at most 1.0x)"
)
