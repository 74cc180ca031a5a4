"""scripts/gpu-check.sh with the tiny shape on the CPU, as the test suite must run it: every model job runs and
is listed with the time its benchmark recorded, and the pruned model it exports is the random model with
exactly the entries of the stored mask zeroed (read back here by hand from the mask file's own bytes)."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
from conftest import ROOT
from safetensors.numpy import load_file

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


def test_the_gpu_check_runs_every_model_job_of_a_one_domain_study_on_the_cpu(tmp_path):
    work = tmp_path / "check"
    env = os.environ | {"PYTHON": sys.executable}
    command = [str(ROOT / "scripts" / "gpu-check.sh"), "tiny", "--workdir", str(work), "--cores", "2"]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result.stdout.splitlines()[-1].startswith("gpu-check: passed")

    rows = [
        line.split()
        for line in result.stdout.splitlines()
        if line.split()[:1] and line.split()[0] in MODEL_RULES
    ]
    assert {row[0] for row in rows} == set(MODEL_RULES)
    assert all(row[4] == "-" for row in rows)  # no GPU used on the CPU
    for rule, job, seconds, *_ in rows:  # each row is its own benchmark's record
        with open(work / "benchmarks" / rule / f"{job}.tsv") as handle:
            record = next(csv.DictReader(handle, delimiter="\t"))
        assert abs(float(record["s"]) - float(seconds)) < 0.051, (rule, job)
    # three scopes of two units: masks, evaluations and damage of each; one domain, two variations
    assert sum(row[0] == "masks" for row in rows) == 6 and sum(row[0] == "evaluate" for row in rows) == 6

    manifest = json.loads((work / "results/check/masks/weights/wanda/domain.json").read_text())
    setting = manifest["settings"][0]
    stored = load_file(work / "results/check/masks/weights/wanda/domain.safetensors")
    original = load_file(work / "resources/synthetic/tiny/model.safetensors")
    pruned = load_file(work / "results/check/pruned/model.safetensors")
    assert set(pruned) == set(original)
    zeroed = 0
    for name, weight in original.items():
        parts = name.split(".")  # model.layers.{layer}.{module}.{linear}.weight
        if len(parts) != 6 or parts[-1] != "weight" or parts[1] != "layers":
            assert np.array_equal(pruned[name], weight), name
            continue
        data = stored[f"purchase|{setting}|{parts[2]}.{parts[4]}"]
        mask = np.zeros(weight.size, bool)
        if data.dtype == np.uint8:  # packed bits, numpy's order
            mask = np.unpackbits(data, count=weight.size).astype(bool)
        else:  # sorted flat indices
            mask[data] = True
        mask = mask.reshape(weight.shape)
        assert manifest["conditions"]["purchase"]["counts"][setting][f"{parts[2]}.{parts[4]}"] == mask.sum()
        assert np.array_equal(pruned[name], np.where(mask, 0, weight)), name
        zeroed += int(mask.sum())
    assert zeroed > 0


def test_every_job_log_ends_with_its_peak_resident_memory_which_sees_a_short_peak(tmp_path):
    """A job that holds 400 MB for a moment (Snakemake's benchmark, sampling every 30 s after the first 15,
    would miss it) ends its log with a peak about that much above an idle job's; and the gpu check's job
    table reads that line instead of the benchmark's sampled peak."""
    script = (
        "import sys, numpy as np\n"
        "from biasprune.logs import log_to\n"
        "with log_to(sys.argv[1]):\n"
        "    if sys.argv[2] == 'hold':\n"
        "        block = np.ones(400 * 2**20, np.uint8); del block\n"
    )
    peaks = {}
    for kind in ("idle", "hold"):
        log = tmp_path / f"{kind}.log"
        subprocess.run([sys.executable, "-c", script, str(log), kind], check=True, env=os.environ)
        last = log.read_text().splitlines()[-1].split()
        assert last[:4] == ["biasprune:", "peak", "resident", "memory"] and last[5] == "GiB"
        peaks[kind] = float(last[4])
    # (the file-backed pages of the interpreter's libraries can be dropped under memory pressure: a margin)
    assert peaks["hold"] - peaks["idle"] >= 0.85 * 400 / 1024

    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_check import job_table

    (tmp_path / "benchmarks" / "answers").mkdir(parents=True)
    (tmp_path / "benchmarks" / "answers" / "m.tsv").write_text("s\tmax_rss\n12.5\t100.0\n")
    (tmp_path / "logs" / "answers").mkdir(parents=True)
    (tmp_path / "hold.log").rename(tmp_path / "logs" / "answers" / "m.log")
    [row] = job_table(tmp_path)
    assert row["s"] == 12.5 and row["max_rss_mb"] == peaks["hold"] * 1024 and row["gpu_gib"] is None
