"""Deployment files: every rule has a pinned conda env that agrees with pyproject and holds every module
the rule's script imports; `snakemake --sdm conda -n` resolves the DAG; profiles parse."""

import ast
import os
import re
import sys
import tomllib
from pathlib import Path

import yaml
from conftest import ROOT, copy_workflow, job_counts, planned_jobs, snakemake

ENVS = ROOT / "workflow" / "envs"
SCRIPTS = ROOT / "workflow" / "scripts"
# Import names whose distribution is named otherwise.
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow"}


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"]:
        name, version = requirement.split("==")
        pins[name.lower().replace("_", "-")] = version
    return pins


def env_pins(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] and "conda-forge" in spec["channels"], path
    pip = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict))
    conda = [item for item in spec["dependencies"] if isinstance(item, str)]
    assert all(re.fullmatch(r"[\w.-]+=[\w.]+", item) for item in conda), conda  # exact conda pins
    pins = {}
    for requirement in pip:
        name, version = requirement.split("==")
        pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_env_pins_exactly_what_pyproject_pins():
    pins = pyproject_pins()
    envs = sorted(ENVS.glob("*.yaml"))
    assert envs
    for path in envs:
        for name, version in env_pins(path).items():
            assert pins.get(name) == version, (
                f"{path.name}: {name}=={version}, pyproject has {pins.get(name)}"
            )


def rules():
    """(rule, conda env file, script file or None) of every rule in workflow/rules."""
    found = []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.M | re.S):
            env = re.search(r'conda:\n\s+"([^"]+)"', body)
            script = re.search(r'script:\n\s+"([^"]+)"', body)
            found.append(
                (
                    rule,
                    (smk.parent / env.group(1)).resolve() if env else None,
                    (smk.parent / script.group(1)).resolve() if script else None,
                )
            )
    return found


def third_party_imports(script) -> set[str]:
    """Top-level modules outside the standard library that a script imports, following `biasprune` modules
    (every import, also those inside functions: a lazy import runs in the same env)."""
    seen, todo, modules = set(), [script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:  # relative: inside biasprune
                base = node.module.split(".") if node.module else []
                names = [".".join(["biasprune", *base])] if base else []
                names += [f"biasprune.{alias.name}" for alias in node.names if not base]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "biasprune":
                    module = SCRIPTS / Path(*name.split(".")).with_suffix(".py")
                    if module.is_file():
                        todo.append(module)
                elif top not in sys.stdlib_module_names and top not in ("__future__", "snakemake"):
                    modules.add(top)
    return modules


def test_every_rule_names_an_env_that_holds_what_its_script_imports():
    pins = pyproject_pins()
    for rule, env, script in rules():
        assert env is not None, f"rule {rule} has no conda env"
        assert env.is_file(), f"rule {rule}: {env} missing"
        if script is None:
            continue
        have = set(env_pins(env))
        need = {
            DISTRIBUTIONS.get(module, module).lower().replace("_", "-")
            for module in third_party_imports(script)
        }
        assert need <= set(pins), f"rule {rule} imports {sorted(need - set(pins))}, not in pyproject"
        assert need <= have, f"rule {rule} ({script.name}) imports {sorted(need - have)}, not in {env.name}"


def test_the_import_walk_follows_the_library():
    """The walk above sees torch behind `biasprune.masks` and nothing but tables behind `prompts`."""
    assert "torch" in third_party_imports(SCRIPTS / "masks.py")
    assert third_party_imports(SCRIPTS / "prompts.py") == {"pyarrow", "jsonschema", "yaml", "datasets"}


def test_conda_dry_run_resolves_the_dag(tmp_path, default_plan):
    """`--sdm conda -n` plans the same jobs as the plain run and names every env file.

    No conda is installable here (no channel is reachable), and Snakemake's dry-run asks `conda info --json`
    for the prefix the envs would live under; the `conda` on PATH below answers that and the version check,
    and fails on any other call (a dry-run must create nothing)."""
    workdir = copy_workflow(tmp_path / "study")
    stub = tmp_path / "bin" / "conda"
    stub.parent.mkdir()
    stub.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f'  "info --json") echo \'{{"conda_prefix": "{tmp_path}/conda", "platform": "linux-64"}}\' ;;\n'
        '  "--version") echo "conda 25.1.1" ;;\n'
        '  "config --get channel_priority --json") echo \'{"get": {"channel_priority": "strict"}}\' ;;\n'
        '  *) echo "a dry-run called conda $*" >&2; exit 99 ;;\n'
        "esac\n"
    )
    stub.chmod(0o755)
    path = f"{stub.parent}:{os.environ['PATH']}"
    result = snakemake(workdir, "-n", "--sdm", "conda", env={**os.environ, "PATH": path})
    assert job_counts(result.stdout) == job_counts(default_plan)
    envs = {path.name for path in ENVS.glob("*.yaml")}
    assert envs == {"model.yaml", "tables.yaml"}
    for name in envs:
        assert f"Conda environment workflow/envs/{name} will be created." in result.stdout + result.stderr


def test_profiles_parse_and_keep_site_settings_out_of_the_config():
    for name in ("default", "slurm"):
        profile = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
        assert isinstance(profile, dict) and profile
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    config = (ROOT / "config" / "config.yaml").read_text()
    assert "partition" not in config and "account" not in config


def test_the_slurm_profile_plans_its_own_threads_and_resources(tmp_path):
    """profiles/default is Snakemake's workflow profile, loaded on every run, and its keys override a
    --profile's key by key: every rule's threads, memory, wall time and partition planned through
    `--profile profiles/slurm` are the ones that profile sets, not the workstation's."""
    slurm = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    workstation = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    assert {key: workstation[key] for key in workstation.keys() & slurm.keys()} == {
        key: slurm[key] for key in workstation.keys() & slurm.keys()
    }
    workdir = copy_workflow(tmp_path / "study")
    jobs = planned_jobs(snakemake(workdir, "-n", "--profile", "profiles/slurm", "--cores", "16").stdout)
    rules = {job["rule"] for job in jobs}
    assert {"answers", "evaluate", "damage", "masks", "scores", "findings"} <= rules
    defaults, overrides = slurm["default-resources"], slurm["set-resources"]
    for job in jobs:
        rule, resources = job["rule"], job["resources"]
        assert job["threads"] == slurm["set-threads"].get(rule, 1), rule
        expected = defaults | overrides.get(rule, {})
        assert int(resources["mem_mb"]) == expected["mem_mb"], rule
        assert int(resources["runtime"]) == expected["runtime"], rule
        assert resources["slurm_partition"] == expected["slurm_partition"], rule


def test_a_workstation_runs_model_jobs_on_config_threads_and_evaluations_on_one(default_plan):
    """Without a site profile: jobs that run the model take config `threads`; evaluation and damage, many
    small jobs, one thread each."""
    threads = yaml.safe_load((ROOT / "config/config.yaml").read_text())["threads"]
    assert threads > 1
    planned = {}
    for job in planned_jobs(default_plan):
        planned.setdefault(job["rule"], set()).add(job["threads"])
    for rule in ("fetch_model", "model_check", "answers", "activations"):
        assert planned[rule] == {threads}, rule
    assert planned["evaluate"] == planned["damage"] == planned["scores"] == {1}
