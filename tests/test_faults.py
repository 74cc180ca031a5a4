"""Surviving faults: a job killed with SIGKILL in `activations` (the job alone) and in `evaluate` (the job
and Snakemake with it, as when a node is lost) leaves no output that Snakemake takes as complete; rerunning
as Snakemake asks completes the run, and its metric tables equal those of an uninterrupted run with the same
seeds (two runs of the same config give identical tables)."""

import os
import signal
from pathlib import Path

import pandas as pd
import yaml
from conftest import ROOT, copy_workflow, job_counts, snakemake, tiny_study

FAULTS = ROOT / "tests" / "faults"  # sitecustomize.py: SIGKILL at the moment a job publishes its result
# The metric tables (the figures and the report drawn from them are left out: they add time, not faults).
TABLES = tuple(
    f"results/tiny/metrics/{name}.parquet" for name in ("baseline", "conditions", "transfer", "findings")
)


def killed_run(workdir: Path, args, rule: str, scope: str, record: Path):
    """Run the study with the first `rule` job killed as it publishes its output; the path it was writing."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])),
        "BIASPRUNE_KILL_RULE": rule,
        "BIASPRUNE_KILL_SCOPE": scope,
        "BIASPRUNE_KILL_RECORD": str(record),
    }
    result = snakemake(workdir, "--cores", "2", *TABLES, *args, check=False, env=env, start_new_session=True)
    assert record.exists(), f"no {rule} job was killed:\n{result.stdout}\n{result.stderr}"
    return result, Path(record.read_text())


def assert_not_complete(workdir: Path, args, output: Path, rule: str) -> None:
    """The killed job's output is absent (its finished temporary was never renamed onto it) and Snakemake
    plans that job again."""
    assert not output.exists()
    assert list(output.parent.glob(f".{output.name}.*")), "the killed job's temporary file should be left"
    plan = snakemake(workdir, "-n", *TABLES, *args).stdout
    assert f"output: {output.relative_to(workdir)}" in plan and job_counts(plan)[rule] >= 1


def test_killed_jobs_leave_nothing_complete_and_the_rerun_equals_an_uninterrupted_run(
    tiny_run, tiny_llama_dir, tmp_path
):
    workdir = copy_workflow(tmp_path / "study")
    args = tiny_study(workdir, tiny_llama_dir)
    # 1. An activations job dies alone: Snakemake reports the failed job and stops.
    result, cache = killed_run(workdir, args, "activations", "job", tmp_path / "killed-activations")
    assert result.returncode != 0 and "Error in rule activations" in result.stdout + result.stderr
    assert_not_complete(workdir, args, cache, "activations")
    # 2. The rerun goes on, and an evaluate job dies with Snakemake itself (the whole process group).
    result, evaluation = killed_run(workdir, args, "evaluate", "run", tmp_path / "killed-evaluate")
    assert result.returncode == -signal.SIGKILL
    assert_not_complete(workdir, args, evaluation, "evaluate")
    # 3. Rerun as Snakemake asks: a killed Snakemake leaves its lock (`--unlock`); jobs it was running are
    # incomplete (the default profile reruns them: rerun-incomplete).
    result = snakemake(workdir, "--cores", "2", *TABLES, *args, check=False)
    if result.returncode != 0:
        message = result.stdout + result.stderr
        assert "--unlock" in message, message
        snakemake(workdir, "--unlock", *args)
        result = snakemake(workdir, "--cores", "2", *TABLES, *args)
    assert "Nothing to be done" in snakemake(workdir, "-n", *TABLES, *args).stdout
    # The killed activations job was redone (in step 2 or 3: which jobs run before the evaluate job is killed
    # depends on the scheduler) and its temporary removed.
    assert cache.exists() and not list(cache.parent.glob(f".{cache.name}.*"))
    assert not list((workdir / "results").rglob(".*.tmp")), "temporary files left behind"
    # The final metric tables equal the uninterrupted run's, value for value.
    tables = sorted((workdir / "results/tiny/metrics").glob("*.parquet"))
    assert (
        {path.stem for path in tables}
        == set(tiny_run.tables)
        == {"baseline", "conditions", "names", "transfer", "findings"}
    )
    for path in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(path), tiny_run.tables[path.stem], check_exact=True)
    # The tables do depend on the seed (the equality above is not vacuous): another bootstrap seed moves
    # the intervals.
    config = yaml.safe_load((workdir / args[1]).read_text())
    config["metrics"]["seed"] = 1
    (workdir / args[1]).write_text(yaml.safe_dump(config))
    # A seed of the intervals reruns the condition metrics only: no mask (not even of the methods ranked
    # against the bias, which read the SMDs' signs), evaluation or damage job.
    planned = job_counts(snakemake(workdir, "-n", "results/tiny/metrics/conditions.parquet", *args).stdout)
    assert planned == {"condition_metrics": 1, "total": 1}, planned
    snakemake(workdir, "--cores", "2", "results/tiny/metrics/conditions.parquet", *args)
    reseeded = pd.read_parquet(workdir / "results/tiny/metrics/conditions.parquet")
    assert not reseeded["reduction_low"].equals(tiny_run.tables["conditions"]["reduction_low"])
