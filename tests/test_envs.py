"""Deployment files: every rule has a pinned conda env that agrees with pyproject, profiles parse."""

import re
import tomllib

import yaml
from conftest import ROOT

ENVS = ROOT / "workflow" / "envs"


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


def test_every_rule_names_an_existing_env():
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), re.M | re.S):
            env = re.search(r'conda:\n\s+"([^"]+)"', body)
            assert env, f"{smk.name}: rule {rule} has no conda env"
            assert (smk.parent / env.group(1)).resolve().is_file(), f"rule {rule}: {env.group(1)} missing"


def test_profiles_parse_and_keep_site_settings_out_of_the_config():
    for name in ("default", "slurm"):
        profile = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
        assert isinstance(profile, dict) and profile
    slurm = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm"
    config = (ROOT / "config" / "config.yaml").read_text()
    assert "partition" not in config and "account" not in config
