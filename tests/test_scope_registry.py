"""The scope registry (vocabulary.SCOPE_REGISTRY) is the one place a scope is declared: a new entry reaches the
config's choices, the `{scope}` wildcard, the conditions and their names, the generalisation levels, the masks
and evaluate jobs' settings, which variations its masks are evaluated on, and the transfer and levels tables;
CONTRIBUTING names exactly the places this test had to touch."""

import re

import pandas as pd
import pytest
import yaml
from conftest import ROOT
from test_conditions import GROUPS, METRICS, answers, evaluated

from biasprune import vocabulary
from biasprune.conditions import condition_tables, levels_table
from biasprune.errors import ConfigError
from biasprune.evaluate import evaluations
from biasprune.jobs import Jobs
from biasprune.schema import load_schema
from biasprune.study import load_study
from biasprune.vocabulary import (
    LEVEL_VARIATION,
    LEVELS,
    Condition,
    Scope,
    generalisation,
    scope_selections,
)

# A made-up scope: each variation's mask is selected on it and the domain's next variation (cyclic, so it
# needs two), and evaluated on that variation alone: always in-sample, so it has no out-of-sample level. Its
# names are tried before the variation scope's (`car/+b` would read as the variation `+b`).
PAIR = Scope(
    "pair",
    "{d}/+{v}",
    0,
    lambda d, vs: (
        {v: {d: [v, vs[d][(i + 1) % len(vs[d])]]} for i, v in enumerate(vs[d])} if len(vs[d]) > 1 else {}
    ),
    (LEVEL_VARIATION, None),
    vocabulary._own_variation,
    noun="pair masks",
)


@pytest.fixture
def registered(monkeypatch):
    """PAIR registered the way CONTRIBUTING says: one entry in the registry (the schema cache cleared so that
    the choices are read again)."""
    monkeypatch.setattr(vocabulary, "SCOPE_REGISTRY", (*vocabulary.SCOPE_REGISTRY, PAIR))
    load_schema.cache_clear()
    yield
    load_schema.cache_clear()


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_the_study_s_scopes_are_the_registry_s_in_its_order():
    assert vocabulary.SCOPES == tuple(vocabulary.scope_names()) == ("variation", "loo", "domain", "cross")
    assert vocabulary.WITHIN == ("variation", "loo")
    # every level a scope declares is one the figures and findings order (LEVELS)
    assert {level for entry in vocabulary.SCOPE_REGISTRY for level in entry.levels} - {None} == set(LEVELS)


def test_the_scope_wildcard_is_built_from_the_registry(registered):
    """The `{scope}` wildcard constraint of common.smk, evaluated as Snakemake would with the vocabulary's
    names, matches the registered scope (the constraint is read when the Snakefile is parsed)."""
    text = (ROOT / "workflow/rules/common.smk").read_text()
    block = text.split("wildcard_constraints:\n", 1)[1].split("\n\n", 1)[0]
    (expression,) = re.findall(r"^\s+scope=(.+),$", block, re.MULTILINE)
    names = {name: getattr(vocabulary, name) for name in dir(vocabulary) if not name.startswith("_")}
    pattern = eval(expression, names)
    assert re.fullmatch(pattern, "pair") and re.fullmatch(pattern, "cross")
    assert not re.fullmatch(pattern, "pairs")


def test_a_new_entry_is_a_config_choice_and_the_jobs_read_its_own_settings(registered):
    config = default_config()
    config["masks"]["scopes"] = ["domain", "pair"]
    config["masks"]["random_scopes"] = ["pair"]
    spec = load_study(config, "config/config.yaml", ROOT)  # the schema accepts the new choice
    jobs = Jobs(spec)
    heads = spec.config["masks"]["heads"]
    # it combines two variations: the masks job keeps the combining rule (the variation scope drops it)
    assert jobs.masks("heads", "pair")["common"] == heads["common"]
    assert "common" not in jobs.masks("heads", "variation")
    assert jobs.evaluate("neurons", "pair") == {} and jobs.evaluate("neurons", "cross") == {
        "cross_in_sample": spec.config["evaluate"]["cross_in_sample"]
    }


def test_without_the_entry_the_choice_is_refused_naming_the_registered_ones():
    load_schema.cache_clear()
    config = default_config()
    config["masks"]["scopes"] = ["domain", "pair"]
    with pytest.raises(ConfigError) as error:
        load_study(config, "config/config.yaml", ROOT)
    assert "masks.scopes" in str(error.value)
    assert all(name in str(error.value) for name in ("variation", "loo", "domain", "cross"))


def test_a_new_entry_selects_names_parses_and_levels_its_conditions(registered):
    variations = {"car": ["a", "b", "c"], "job": ["x"]}
    assert scope_selections("pair", variations) == {
        "car/+a": {"car": ["a", "b"]},
        "car/+b": {"car": ["b", "c"]},
        "car/+c": {"car": ["c", "a"]},
    }
    condition = Condition("pair", "car", "b")
    assert condition.format() == "car/+b"
    # read without its scope too: '/+' is more specific than the variation scope's '/', which would read 'car/+b'
    # as the variation '+b'
    assert Condition.parse("car/+b") == Condition.parse("car/+b", "pair") == condition
    assert Condition.parse("car/-b") == Condition("loo", "car", "b")
    pooled = condition.pool()
    assert pooled.format() == "car/+*" and pooled.pooled and Condition.parse("car/+*") == pooled
    assert pooled.selection_label() == "car (pair masks)"
    assert generalisation("pair", True) == "variation" and generalisation("pair", False) is None
    with pytest.raises(ValueError, match="not a pair condition: 'car'"):
        Condition.parse("car", "pair")


def test_a_new_entry_s_masks_are_evaluated_where_it_says(registered):
    manifest = {
        "scope": "pair",
        "settings": ["k=1"],
        "random_seeds": [],
        "conditions": {
            name: {"selection": selection, "counts": {"k=1": {"0": 1}}}
            for name, selection in scope_selections("pair", {"car": ["a", "b"], "job": ["x", "y"]}).items()
        },
    }
    plan = evaluations(manifest, "car", ["a", "b"])
    # each car mask on its own variation only, in-sample (it was selected on it); no job mask on car
    assert [(e.condition, e.variations, e.in_sample) for e in plan] == [
        ("car/+a", ("a",), True),
        ("car/+b", ("b",), True),
    ]


def test_a_new_entry_enters_the_transfer_table_pooled_per_domain(registered):
    """Every mask's own row reaches the transfer matrix: a `domain` mask, and a within-domain scope's masks
    pooled per domain under its noun (each variation's row stays out), here the made-up `pair` scope."""
    base = answers(8.0)
    frames = [
        evaluated("purchase", "pruned", -1, answers(1.0, seed=1)),
        pd.concat(
            [
                evaluated(
                    f"purchase/+{v}", "pruned", -1, answers(2.0, seed=2)[lambda f, v=v: f["variation"] == v]
                ).assign(scope="pair")
                for v in ("chair", "car")
            ]
        ),
    ]
    damage = pd.DataFrame(
        [
            {"unit": "heads", "method": "attribution", "scope": scope, "condition": condition}
            | {"setting": "share=0.1", "control": "pruned", "seed": -1, "kl": kl}
            for scope, condition, kl in (
                ("domain", "purchase", 0.1),
                ("pair", "purchase/+chair", 0.2),
                ("pair", "purchase/+car", 0.4),
            )
        ]
    )
    manifests = [
        {"unit": "heads", "method": "attribution", "scope": scope, "shapes": {"0": [4], "1": [6]}}
        for scope in ("domain", "pair")
    ]
    conditions, transfer, _ = condition_tables(frames, damage, manifests, base, GROUPS, METRICS)
    assert sorted(zip(transfer["scope"], transfer["selection"], strict=True)) == [
        ("domain", "purchase"),
        ("pair", "purchase (pair masks)"),
    ]
    # the pooled row's damage is the mean over the two masks it pools
    pooled = conditions[(conditions["condition"] == "purchase/+*") & (conditions["level"] == "domain")]
    assert pooled["kl"].tolist() == [pytest.approx(0.3)]
    # the levels: the pooled pair masks at their declared in-sample level, beside the domain mask's
    levels = levels_table(conditions)
    assert sorted(zip(levels["scope"], levels["condition"], levels["generalisation"], strict=True)) == [
        ("domain", "purchase", "domain (in-sample)"),
        ("pair", "purchase/+*", "variation"),
    ]


def test_contributing_names_the_one_place_a_scope_touches():
    """CONTRIBUTING's scope paragraph names the registry and this test, and findings.py (where a claim reads
    levels by name), nothing else: the schema's choices, the jobs, the evaluation and the tables follow."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    paragraph = text.split("**A scope", 1)[1].split("\n\n", 1)[0]
    places = set(re.findall(r"`([\w/.]+\.(?:py|yaml|md|smk))`", paragraph))
    assert places == {"vocabulary.py", "findings.py", "tests/test_scope_registry.py"}
    assert "SCOPE_REGISTRY" in paragraph
