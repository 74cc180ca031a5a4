"""Surviving faults: a job killed with SIGKILL in `activations` (the job alone) and in `evaluate` (the job
and Snakemake with it, as when a node is lost) leaves no output that Snakemake takes as complete; rerunning
as Snakemake asks completes the run, and every file it made equals the uninterrupted tiny chain's (the same
config and seeds): tables value for value, mask tensors entry for entry. The run is a slice of the tiny chain
(the baseline, one method's domain masks, their evaluations and damage), which holds both killed rules."""

import os
import signal
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, copy_run, copy_workflow, job_counts, snakemake, tiny_study
from safetensors.numpy import load_file

pytestmark = pytest.mark.xdist_group("tiny_run")
FAULTS = ROOT / "tests" / "faults"  # sitecustomize.py: SIGKILL at the moment a job publishes its result
SET = "heads/name_attention"  # needs the activation cache, the first killed rule
SLICE = (
    "results/tiny/metrics/baseline.parquet",
    f"results/tiny/masks/{SET}/domain.safetensors",
    *(f"results/tiny/eval/{SET}/domain/{domain}.parquet" for domain in ("purchase", "hiring")),
    f"results/tiny/damage/{SET}/domain.parquet",
)


def killed_run(workdir: Path, args, rule: str, scope: str, record: Path):
    """Run the slice with the first `rule` job killed as it publishes its output; the path it was writing."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])),
        "BIASPRUNE_KILL_RULE": rule,
        "BIASPRUNE_KILL_SCOPE": scope,
        "BIASPRUNE_KILL_RECORD": str(record),
    }
    result = snakemake(workdir, "--cores", "2", *SLICE, *args, check=False, env=env, start_new_session=True)
    assert record.exists(), f"no {rule} job was killed:\n{result.stdout}\n{result.stderr}"
    return result, Path(record.read_text())


def assert_not_complete(workdir: Path, args, output: Path, rule: str) -> None:
    """The killed job's output is absent (its finished temporary was never renamed onto it) and Snakemake
    plans that job again."""
    assert not output.exists()
    assert list(output.parent.glob(f".{output.name}.*")), "the killed job's temporary file should be left"
    plan = snakemake(workdir, "-n", *SLICE, *args).stdout
    assert f"output: {output.relative_to(workdir)}" in plan and job_counts(plan)[rule] >= 1


def assert_same_file(path: Path, reference: Path) -> None:
    """`path` holds what `reference` holds: a table's rows and provenance, a tensor file's every tensor."""
    if path.suffix == ".parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(reference), check_exact=True)
        assert pq.read_schema(path).metadata == pq.read_schema(reference).metadata, path
    elif path.suffix == ".safetensors":
        tensors, expected = load_file(path), load_file(reference)
        assert tensors.keys() == expected.keys() and tensors, path
        for key, tensor in tensors.items():
            assert tensor.dtype == expected[key].dtype and (tensor == expected[key]).all(), (path, key)
    else:
        assert path.read_bytes() == reference.read_bytes(), path


def test_killed_jobs_leave_nothing_complete_and_the_rerun_equals_an_uninterrupted_run(
    tiny_run, tiny_llama_dir, tmp_path
):
    workdir = copy_workflow(tmp_path / "study")
    args = tiny_study(workdir, tiny_llama_dir)
    assert (workdir / args[1]).read_text() == (tiny_run.workdir / args[1]).read_text()
    # 1. An activations job dies alone: Snakemake reports the failed job and stops.
    result, cache = killed_run(workdir, args, "activations", "job", tmp_path / "killed-activations")
    assert result.returncode != 0 and "Error in rule activations" in result.stdout + result.stderr
    assert_not_complete(workdir, args, cache, "activations")
    # 2. The rerun goes on, and an evaluate job dies with Snakemake itself (the whole process group).
    result, evaluation = killed_run(workdir, args, "evaluate", "run", tmp_path / "killed-evaluate")
    assert result.returncode == -signal.SIGKILL
    assert_not_complete(workdir, args, evaluation, "evaluate")
    # 3. Rerun as Snakemake asks: a killed Snakemake leaves its lock (`--unlock`); jobs it was running are
    # incomplete (the workflow profile reruns them: rerun-incomplete).
    result = snakemake(workdir, "--cores", "2", *SLICE, *args, check=False)
    if result.returncode != 0:
        message = result.stdout + result.stderr
        assert "--unlock" in message, message
        snakemake(workdir, "--unlock", *args)
        result = snakemake(workdir, "--cores", "2", *SLICE, *args)
    assert "Nothing to be done" in snakemake(workdir, "-n", *SLICE, *args).stdout
    # The killed activations job was redone (in step 2 or 3: which jobs run before the evaluate job is killed
    # depends on the scheduler) and its temporary removed.
    assert cache.exists() and not list(cache.parent.glob(f".{cache.name}.*"))
    assert not list((workdir / "results").rglob(".*.tmp")), "temporary files left behind"
    # Every file of the slice equals the uninterrupted run's, value for value.
    made = sorted(path.relative_to(workdir) for path in (workdir / "results").rglob("*") if path.is_file())
    assert {str(path) for path in made} >= {*SLICE, str(cache.relative_to(workdir))}
    assert {path.parts[2] for path in made if path.parts[1] == "tiny"} >= {
        "answers",
        "activations",
        "scores",
        "masks",
        "eval",
        "damage",
        "metrics",
    }
    for path in made:
        assert_same_file(workdir / path, tiny_run.workdir / path)


def test_another_bootstrap_seed_reruns_the_condition_metrics_alone_and_moves_the_intervals(
    tiny_run, tmp_path
):
    """On a copy of the finished tiny chain: a seed of the intervals reruns the condition metrics only, no
    mask (not even of the methods ranked against the bias, which read the SMDs' signs), evaluation or damage
    job; and the tables do depend on the seed (so the equality above is not vacuous)."""
    workdir, args = copy_run(tiny_run, tmp_path / "study"), tiny_run.args
    assert "Nothing to be done" in snakemake(workdir, "-n", *args).stdout
    config = yaml.safe_load((workdir / args[1]).read_text())
    config["metrics"]["seed"] = 1
    (workdir / args[1]).write_text(yaml.safe_dump(config))
    planned = job_counts(snakemake(workdir, "-n", "results/tiny/metrics/conditions.parquet", *args).stdout)
    assert planned == {"condition_metrics": 1, "total": 1}, planned
    snakemake(workdir, "--cores", "2", "results/tiny/metrics/conditions.parquet", *args)
    reseeded = pd.read_parquet(workdir / "results/tiny/metrics/conditions.parquet")
    assert not reseeded["reduction_low"].equals(tiny_run.tables["conditions"]["reduction_low"])
