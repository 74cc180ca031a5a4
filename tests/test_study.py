"""The shipped config is the reproduced study: its domains, variations, names and defaults."""

from collections import Counter

import yaml
from conftest import ROOT

from biasprune.jobs import Jobs
from biasprune.models import fetch_model, load_model
from biasprune.schema import validate
from biasprune.study import load_study


def study(name):
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    return load_study(config, f"config/{name}", ROOT)


def test_default_config_is_the_papers_four_contexts_sized_for_two_cores_and_the_full_design_one_switch_away():
    spec = study("config.yaml")
    assert spec.groups == ("White", "Black")
    assert {key: len(values) for key, values in spec.variations.items()} == {
        "purchase": 3,
        "activities": 3,
        "services": 3,
        "finance": 3,
    }
    assert Counter((row["race"], row["gender"]) for row in spec.names) == {
        (race, gender): 8 for race in ("White", "Black") for gender in ("female", "male")
    }
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["variations"], config["names"]["include"] = {}, []
    full = load_study(config, "config/config.yaml", ROOT)
    assert len(full.variations["purchase"]) == 10 and len(full.names) == 64
    assert Counter((row["race"], row["gender"]) for row in full.names) == {
        (race, gender): 16 for race in ("White", "Black") for gender in ("female", "male")
    }
    assert spec.models == ["smollm2-135m-instruct"]
    assert spec.config["prompts"]["answer_suffix"].startswith("Reply only with the number despite")
    assert all(domain.suffix for domain in spec.domains.values())


def test_test_config_is_two_domains_two_variations_eight_names_with_defaults_filled():
    spec = study("test-config.yaml")
    assert {key: len(values) for key, values in spec.variations.items()} == {"purchase": 2, "hiring": 2}
    assert Counter(row["race"] for row in spec.names) == {"White": 4, "Black": 4}
    assert spec.config["prompts"]["answer_suffix"]  # default from the schema
    assert Jobs(spec).model_source("smollm2-135m-instruct") == {
        key: value
        for key, value in spec.model("smollm2-135m-instruct").items()
        if key not in ("dtype", "device", "gpus", "about")
    }


def test_every_shipped_domain_file_loads():
    keys = sorted(path.stem for path in (ROOT / "resources/prompts").glob("*.yaml") if path.stem != "neutral")
    assert keys == [
        "activities",
        "chess",
        "finance",
        "hiring",
        "public_office",
        "purchase",
        "services",
        "sports",
    ]
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text()) | {"domains": keys}
    spec = load_study(config, "config", ROOT)
    assert spec.domains["sports"].answer.favourable == "lower"
    assert spec.domains["chess"].variations == ("chess",)
    assert spec.domains["purchase"].answer.grid[:3] == (10, 15, 20)
    for domain in spec.domains.values():
        low, high = domain.answer.range
        assert all(low <= value <= high for value in domain.answer.grid), domain.key


def test_local_source_links_the_folder_and_loads(tmp_path, tiny_llama_dir):
    out = tmp_path / "models" / "mine"
    fetch_model("mine", {"source": "local", "path": str(tiny_llama_dir)}, out)
    assert (out / "config.json").is_symlink() and (out / "biasprune-source.json").is_file()
    model, tokenizer = load_model(out, device="cpu")
    assert model.config.num_hidden_layers == 2 and tokenizer.chat_template


def test_defaults_of_one_model_source_do_not_leak_into_another():
    spec = study("config.yaml")
    assert "revision" not in spec.model("smollm2-135m-instruct")
    assert spec.model("llama-3-8b-instruct")["revision"] == "main"
    assert Jobs(spec).readout("smollm2-135m-instruct")["mode"] == "expected"


def test_reordered_config_keys_give_the_same_job_parameters():
    """Snakemake compares parameters by repr: a config whose mappings list their keys in another order
    must give identical parameters (or every job would rerun)."""

    def reversed_keys(value):
        if isinstance(value, dict):
            return {key: reversed_keys(value[key]) for key in reversed(list(value))}
        return value

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    one = load_study(config, "config/config.yaml", ROOT)
    two = load_study(reversed_keys(config), "config/config.yaml", ROOT)
    model = one.models[0]
    for method, args in (
        ("readout", (model,)),
        ("model_source", (model,)),
        ("model_runtime", (model,)),
        ("masks", ("heads", "domain")),
        ("appendix", (model,)),
    ):
        assert repr(getattr(Jobs(one), method)(*args)) == repr(getattr(Jobs(two), method)(*args)), method
    assert repr(one.config) == repr(two.config)
    assert list(reversed_keys(config)) != list(config)  # the orders did differ


def leaves(value, path=()):
    """{dotted key: value} of every leaf of a nested mapping."""
    if isinstance(value, dict) and value:
        return {key: leaf for name, sub in value.items() for key, leaf in leaves(sub, (*path, name)).items()}
    return {".".join(path): value}


# What the study is about rather than how it measures: the schema cannot know them (an empty `include` or
# `variations` means every name or variation; `domains`, `models` and `model_registry` are required).
DESIGN_KEYS = ("domains", "models", "model_registry", "names.include", "variations")


def test_schema_defaults_are_the_shipped_study():
    """Deleting a key of config/config.yaml changes nothing: every setting's schema default is its value."""
    shipped = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    required = {key: shipped[key] for key in ("domains", "models", "model_registry")}
    from_defaults = leaves(validate(required, "config", "defaults"))
    from_file = leaves(validate(shipped, "config", "config/config.yaml"))
    design = [key for key in from_file if key.startswith(DESIGN_KEYS)]
    differing = {
        key: (from_file[key], from_defaults.get(key, "(no default)"))
        for key in from_file
        if key not in design and from_file[key] != from_defaults.get(key, "(no default)")
    }
    assert differing == {}
    # The comparison covers the study's settings (non-vacuous), keys the file leaves out included.
    assert len(from_file) - len(design) > 45 and "masks.matched_seeds" in from_file
    assert {key for key in from_defaults if not key.startswith(DESIGN_KEYS)} <= set(from_file)
