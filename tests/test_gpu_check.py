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
