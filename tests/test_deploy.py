"""The workflow deployed as a Snakemake module with snakedeploy (the workflow catalog's route) plans the study."""

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, copy_workflow, job_counts, snakemake

SNAKEDEPLOY = str(Path(sys.executable).parent / "snakedeploy")


def test_snakedeploy_module_dry_runs_the_same_study(tmp_path, default_plan):
    source = copy_workflow(tmp_path / "clone")
    shutil.copy2(ROOT / "LICENSE", source / "LICENSE")
    deployed = tmp_path / "deployed"
    subprocess.run(
        [
            SNAKEDEPLOY,
            "deploy-workflow",
            str(source),
            str(deployed),
            "--branch",
            "main",
            "--name",
            "biasprune",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    snakefile = deployed / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert "module biasprune:" in text and "use rule * from biasprune" in text
    assert (deployed / "config" / "config.yaml").read_text() == (ROOT / "config" / "config.yaml").read_text()
    assert (deployed / "LICENSE").is_file()
    # snakedeploy writes a local source's Snakefile relative to the source folder, which Snakemake resolves
    # against the deployed workflow/ folder: point it at the clone (a GitHub source gets github(...) instead).
    snakefile.write_text(text.replace('"workflow/Snakefile"', f'"{source}/workflow/Snakefile"'))
    # The study's prompt files travel with the deployment (the config points at resources/prompts).
    shutil.copytree(source / "resources", deployed / "resources")
    # The library is found next to the module's rules: the clone's copy announces itself (the tests' editable
    # install would otherwise serve the import silently).
    init = source / "workflow" / "scripts" / "biasprune" / "__init__.py"
    init.write_text(init.read_text() + "\nimport sys\n\nprint('biasprune from', __file__, file=sys.stderr)\n")
    assert not (deployed / "workflow" / "scripts").exists()

    run = snakemake(deployed, "-n", "--cores", "1")
    assert f"biasprune from {init}" in run.stderr
    planned = job_counts(run.stdout)
    assert planned == job_counts(default_plan)
    assert planned["evaluate"] > 0 and planned["appendix"] == 1
