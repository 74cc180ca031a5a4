"""The tiny chain (`tiny_run`: every method but greedy on a tiny random Llama, the test config's two domains, every
scope and control) and every test that reads it, in one module so that `pytest -n 2 --dist loadfile` (make
test) builds it once: what the chain made, what an edit reruns (on a copy), and surviving faults.

Faults: a job killed with SIGKILL in `activations` (the job alone) and in `evaluate` (the job and Snakemake
with it, as when a node is lost) leaves no output that Snakemake takes as complete; rerunning as Snakemake asks
completes the run, and every file it made equals the uninterrupted tiny chain's (the same config and seeds):
tables value for value, mask tensors entry for entry. That run is a slice of the tiny chain's config (the
baseline, one method's domain masks, their evaluations and damage), which holds both killed rules."""

import os
import signal
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch
import yaml
from conftest import ROOT, TINY_SETS, copy_run, copy_workflow, job_counts, snakemake, tiny_study
from safetensors.numpy import load_file

from biasprune.ablation import Mask, masked
from biasprune.maskfile import load_masks
from biasprune.models import load_model

# The appendix's figures (workflow/rules/common.smk FIGURES).
FIGURES = ("baseline", "before_after", "transfer", "units", "tradeoff", "components", "overlap")
FAULTS = ROOT / "tests" / "faults"  # sitecustomize.py: SIGKILL at the moment a job publishes its result
NAMES = yaml.safe_load((ROOT / "config/test-config.yaml").read_text())["names"]["include"]
SET = "heads/name_attention"  # needs the activation cache, the first killed rule
SLICE = (
    "results/tiny/metrics/baseline.parquet",
    f"results/tiny/masks/{SET}/domain.safetensors",
    *(f"results/tiny/eval/{SET}/domain/{domain}.parquet" for domain in ("purchase", "hiring")),
    f"results/tiny/damage/{SET}/domain.parquet",
)


def test_the_tiny_chain_runs_every_unit_scope_and_control_into_the_tables_and_the_appendix(tiny_run):
    workdir = tiny_run.workdir
    counts = job_counts(tiny_run.output)
    # Every rule of the workflow runs here but three, each run by a test of its own in every CI run:
    # greedy_scores (test_greedy_head_selection_...), export_pruned (test_scoring_change_...), comparison
    # (tests/test_two_models.py).
    listed = snakemake(workdir, "--list-rules", *tiny_run.args).stdout.splitlines()
    rules = {line.split()[0] for line in listed if line.strip()}
    assert len(rules) > 20 and rules - set(counts) == {"greedy_scores", "export_pruned", "comparison"}
    sets = len(TINY_SETS)
    assert counts["activations"] == 2 and counts["residuals"] == 2
    assert counts["scores"] == 2 * sets and counts["masks"] == sets * 4
    assert (
        counts["evaluate"] == sets * 4 * 2
        and counts["damage"] == sets * 4
        and counts["condition_metrics"] == 1
    )
    manifest, masks = load_masks(workdir / "results/tiny/masks/heads/attribution/loo.safetensors")
    loo = {"purchase/-chair", "purchase/-car", "hiring/-software developer", "hiring/-lawyer"}
    # the all-names masks and, cross-fitted, each fold's (selected without its names)
    assert {condition for condition, _ in masks} == loo | {f"{c}@{f}" for c in loo for f in "AB"}
    folds = {fold: set(entry["names"]) for fold, entry in manifest["folds"].items()}
    assert (
        sorted(folds) == ["A", "B"] and folds["A"] | folds["B"] == set(NAMES) and not folds["A"] & folds["B"]
    )
    # Every evaluation reads each name once per mask, under the mask of the fold holding it out.
    for path in (workdir / "results/tiny/eval").glob("*/*/*/*.parquet"):
        table = pd.read_parquet(path)
        labels = pd.read_parquet(
            workdir / f"results/prompts/{path.stem}.parquet", columns=["prompt_id", "name"]
        )
        table = table.merge(labels, on="prompt_id")
        assert [table["name"][table["fold"] == fold].isin(names).all() for fold, names in folds.items()] == [
            True,
            True,
        ], path
        assert not table.duplicated(["condition", "setting", "control", "seed", "prompt_id"]).any(), path
    names_table = tiny_run.tables["names"]
    read = names_table[names_table["control"] != "base"]
    assert (read["fold"] == read["name"].map({n: f for f, ns in folds.items() for n in ns})).all()
    for unit, method in TINY_SETS:
        assert pq.read_table(workdir / f"results/tiny/scores/{unit}/{method}/hiring.parquet").num_rows > 0
    # The result tables: every (selection x evaluated domain) cell of the domain scope, with random controls.
    transfer = pd.read_parquet(workdir / "results/tiny/metrics/transfer.parquet")
    cells = transfer[(transfer["scope"] == "domain") & (transfer["method"] == "name_attention")]
    assert sorted(zip(cells["selection"], cells["evaluated"], cells["in_sample"], strict=True)) == [
        ("hiring", "hiring", True),
        ("hiring", "purchase", False),
        ("purchase", "hiring", False),
        ("purchase", "purchase", True),
    ]
    assert cells["random_reduction_mean"].notna().all() and cells["kl"].notna().all()
    # Head masks by frequency are never empty and their matched control ran. On one variation the generic
    # control (top heads by the attention mass of both groups) is the paper's mask itself: not stored.
    assert (~cells["vacuous"]).all() and cells["matched_reduction_mean"].notna().all()
    manifest, _ = load_masks(workdir / "results/tiny/masks/heads/name_attention/variation.safetensors")
    assert {g for entry in manifest["conditions"].values() for g in entry["generic"].values()} == {
        "identical"
    }
    conditions = pd.read_parquet(workdir / "results/tiny/metrics/conditions.parquet")
    assert set(conditions["scope"]) == {"variation", "loo", "domain", "cross"}
    assert set(conditions["control"]) == {"pruned", "random", "matched", "generic"}
    # Directions: every scope, every control where the config asks for them, one edit per residual layer.
    for method in ("mean_difference", "leace"):
        rows = conditions[(conditions["unit"] == "directions") & (conditions["method"] == method)]
        assert set(rows["scope"]) == {"variation", "loo", "domain", "cross"}
        controlled = rows[rows["scope"].isin(["domain", "cross"])]
        assert set(controlled["control"]) == {"pruned", "random", "matched", "generic"}
        assert set(rows.loc[rows["scope"] == "loo", "control"]) == {"pruned"}
        assert (rows["n_pruned"] == 3).all() and (rows["share_pruned"] == 1).all()  # layers 0, 1 and final
        assert rows.loc[rows["level"] == "variation", "kl"].notna().all()
    # A weight mask's matched pool lies outside it and holds at least as many entries in every matrix (the
    # mask's score profile: test_selection.py), and its generic control prunes as many entries per matrix.
    manifest, masks = load_masks(workdir / "results/tiny/masks/weights/wanda/domain.safetensors")
    for condition, setting in masks:
        mask, pool = masks[condition, setting], masks.part(condition, setting, "pool")
        generic = masks.part(condition, setting, "generic")
        assert all(not (mask[k] & pool[k]).any() and pool[k].sum() >= mask[k].sum() for k in mask)
        assert all(int(generic[k].sum()) == int(mask[k].sum()) for k in mask)
    # The appendix and the Snakemake report of the same run.
    html = (workdir / "reports/tiny/appendix.html").read_text()
    assert html.count("data:image/png;base64,") == 7 and 'id="findings-table"' in html
    assert "A linear direction found in other contexts removes more of the gap" in html  # claim 5
    findings = pd.read_csv(workdir / "reports/tiny/tables/findings.csv")
    assert set(findings["claim"]) == {1, 2, 3, 4, 5}
    assert set(findings.loc[findings["claim"] == 5, "units"]) == {
        "directions/mean_difference",
        "directions/leace",
    }
    assert set(findings["verdict"]) <= {"holds", "does not hold", "inconclusive", "secondary"}
    assert (findings["names"].str.startswith("cross-fitted over 2 folds")).all()
    # every mask and control is read on both folds (a fold's generic equal to its mask is read as the mask)
    assert (conditions["name_folds"] == 2).all()
    paper_pair = findings[(findings["claim"] == 2) & findings["primary"]]
    assert paper_pair["units"].tolist() == ["weights/wanda vs heads/name_attention"]


def test_scoring_change_reruns_scores_and_never_the_cache(tiny_run, tiny_llama_dir, tmp_path):
    workdir, args = copy_run(tiny_run, tmp_path / "study"), tiny_run.args
    snakemake(workdir, "--report", "reports/report.zip", *args)
    with zipfile.ZipFile(workdir / "reports/report.zip") as archive:
        names = archive.namelist()
    assert any(name.endswith("/appendix.html") for name in names)
    assert sum(name.endswith(".png") for name in names) == 7
    assert "Nothing to be done" in snakemake(workdir, "-n", *args).stdout
    # A pruned model for one mask: the saved folder gives the logits of the masked model.
    config = yaml.safe_load((workdir / "config/tiny.yaml").read_text())
    config["export"] = {
        "unit": "heads",
        "method": "attribution",
        "scope": "domain",
        "condition": "hiring",
        "setting": "share=0.039",
    }
    (workdir / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    snakemake(workdir, "--cores", "1", "results/tiny/pruned", *args)
    pruned, tokenizer = load_model(workdir / "results/tiny/pruned", device="cpu")
    original, _ = load_model(tiny_llama_dir, device="cpu")
    _, masks = load_masks(workdir / "results/tiny/masks/heads/attribution/domain.safetensors", original)
    ids = torch.tensor([tokenizer("Hi Jamal, $")["input_ids"]])
    with torch.no_grad(), masked(original, Mask("heads", masks["hiring", "share=0.039"]), "hooks"):
        expected = original(ids).logits
    with torch.no_grad():
        torch.testing.assert_close(pruned(ids).logits, expected)
    # Resources and unused settings change no result: a GPU request, every batch size, the threads,
    # another readout mode's setting.
    config = yaml.safe_load((workdir / "config/tiny.yaml").read_text())
    config["model_registry"]["tiny"]["gpus"] = 1
    config["readout"]["batch_size"] = 3
    config["activations"] |= {"batch_size": 5, "attribution_batch_size": 1}
    config["threads"] = 1
    config["readout"]["max_new_tokens"] = 3  # used by sample and greedy, not by expected
    (workdir / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    assert "Nothing to be done" in snakemake(workdir, "-n", *args).stdout
    # A neuron-scoring parameter: the neuron activation scores (and what follows) rerun, no cache, no answers.
    config = yaml.safe_load((workdir / "config/tiny.yaml").read_text())
    config["scoring"]["neurons"]["position"] = "name"
    (workdir / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", *args)
    counts = job_counts(result.stdout)
    print("after a scoring change:", counts)
    assert counts == {
        "scores": 2,
        "masks": 4,
        "evaluate": 4 * 2,
        "damage": 4,
        "condition_metrics": 1,
        # Every figure but the baseline's, the findings, the CSV tables and the appendix.
        "figure": len(FIGURES) - 1,
        "findings": 1,
        "tables": 1,
        "appendix": 1,
        "all": 1,
        "total": 29,
    }
    assert "results/tiny/scores/neurons/activation/purchase.parquet" in result.stdout
    # A cache parameter reruns the cache and every score, but not the answers.
    config["activations"]["positions"] = "name_and_answer"
    (workdir / "config/tiny.yaml").write_text(yaml.safe_dump(config))
    counts = job_counts(snakemake(workdir, "-n", *args).stdout)
    print("after a cache change:", counts)
    assert (
        counts["activations"] == 2
        and counts["scores"] == 8
        and counts["masks"] == 16
        and "answers" not in counts
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


def test_results_page_names_the_tables_it_was_written_from_and_their_numbers(tiny_run, tmp_path):
    """scripts/results_at_a_glance.py on the finished tiny chain: the findings job recorded its day and the
    commit of the library that ran (this checkout's, read here with git; `-dirty` when its tracked files
    differ, as during development); the page names both tables by their sha256, and every
    primary verdict, baseline gap and the wall time equal what the tables and Snakemake's logs hold, read
    here with pandas, hashlib and a regex of their own."""
    import hashlib
    import re
    import subprocess
    import sys
    from datetime import date

    import biasprune
    from biasprune.io import read_provenance

    metrics = tiny_run.workdir / "results/tiny/metrics"
    library = Path(biasprune.__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", library, *args], capture_output=True, text=True, check=True
        ).stdout

    head = git("rev-parse", "HEAD").strip()
    commit = head + ("-dirty" if git("diff", "HEAD", "--stat").strip() else "")
    provenance = read_provenance(metrics / "findings.parquet")
    assert provenance == {"commit": commit, "written": date.today().isoformat()}
    out = tmp_path / "results.md"
    script = ROOT / "scripts/results_at_a_glance.py"
    subprocess.run([sys.executable, script, tiny_run.workdir, "--out", out], check=True, capture_output=True)
    text = out.read_text()
    for name in ("findings", "baseline"):
        digest = hashlib.sha256((metrics / f"{name}.parquet").read_bytes()).hexdigest()
        assert f"`results/tiny/metrics/{name}.parquet`, sha256 `{digest}`" in text
    assert f"| written | {date.today().isoformat()} (the findings table) |" in text
    assert f"| commit | `{commit}` (the checkout that wrote the findings) |" in text

    def rows(section: str) -> list[list[str]]:
        body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
        table = body.split("|---", 1)[1].splitlines()[1:]  # the lines after the header's separator
        return [[cell.strip() for cell in line.strip("|").split("|")] for line in table if line]

    def number(x: float) -> str:
        return "—" if pd.isna(x) else f"{x:+.2f}"

    findings = tiny_run.tables["findings"]
    primary = findings[findings["primary"]]
    assert len(primary) > 0 and len(rows("Primary verdicts")) == len(primary)
    for cells, (_, row) in zip(rows("Primary verdicts"), primary.iterrows(), strict=True):
        expected = [str(row["claim"]), row["units"], str(row["setting"]), row["verdict"], row["contrast"]]
        assert cells[:5] == [cell.replace("|", "/") for cell in expected]
        assert cells[5] == number(row["estimate"])
        if pd.isna(row["estimate"]):
            assert cells[6] == row["evidence"].replace("|", "/")
        elif pd.notna(row["low"]) and pd.notna(row["high"]):
            assert cells[6] == f"[{number(row['low'])}, {number(row['high'])}]"
    baseline = tiny_run.tables["baseline"]
    variations = baseline[baseline["variation"].notna()]
    lines = rows("Baseline gaps")
    assert f"{int(variations['measurable'].sum())} of {len(variations)} variations" in text
    assert [(c[0], c[1], c[2]) for c in lines] == [
        (r.domain, r.variation, number(r.smd)) for r in variations.itertuples()
    ]
    stamps = []
    for log in (tiny_run.workdir / ".snakemake/log").glob("*.log"):
        found = re.findall(r"^\[([A-Z][a-z]{2} [A-Z][a-z]{2} .{2} [\d:]{8} \d{4})\]$", log.read_text(), re.M)
        if "Finished jobid" in log.read_text() and found:
            times = pd.to_datetime(
                [" ".join(stamp.split()) for stamp in found], format="%a %b %d %H:%M:%S %Y"
            )
            stamps.append((times.max() - times.min()).total_seconds())
    seconds = round(sum(stamps))
    assert (
        f"| Snakemake wall time | {seconds // 60} min {seconds % 60} s ({len(stamps)} invocation(s)" in text
    )
