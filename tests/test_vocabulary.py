"""The study's vocabulary: condition and setting names against hand-written strings (both ways), the
share-to-count rule against hand-computed counts, the levels, and that no other module spells the names."""

import ast

import pandas as pd
import pytest
from conftest import ROOT

from biasprune.vocabulary import (
    BASE,
    CONTROLS,
    CROSS,
    DOMAIN,
    FRACTION,
    GENERIC,
    HELD_OUT,
    IN_CONTEXT,
    LAYERS,
    LEVELS,
    LOO,
    MATCHED,
    PRUNED,
    RANDOM,
    SCOPES,
    SHARE,
    SHARE_KEYS,
    TAU,
    TRANSFER,
    VARIATION,
    Condition,
    K,
    Setting,
    generalisation,
    scope_selections,
    settings,
    share_count,
    units_label,
)

# (name, condition) of every kind of condition, written out by hand.
CONDITIONS = [
    ("purchase/car", Condition(VARIATION, "purchase", "car")),
    ("purchase/-car", Condition(LOO, "purchase", "car")),
    ("purchase", Condition(DOMAIN, "purchase")),
    ("-purchase", Condition(CROSS, "purchase")),
    ("purchase/*", Condition(VARIATION, "purchase")),
    ("purchase/-*", Condition(LOO, "purchase")),
    ("hire/a used car", Condition(VARIATION, "hire", "a used car")),
    ("hire/-1/2 price", Condition(LOO, "hire", "1/2 price")),
]


@pytest.mark.parametrize(("name", "condition"), CONDITIONS)
def test_condition_names_both_ways(name, condition):
    assert condition.format() == name
    assert Condition.parse(name) == condition
    assert Condition.parse(name, condition.scope) == condition
    assert condition.pooled == name.endswith("*")


def test_the_scope_reads_what_the_syntax_leaves_open():
    """A variation named '-car' at the variation scope is not the leave-one-out mask of 'car'."""
    assert Condition.parse("purchase/-car", VARIATION) == Condition(VARIATION, "purchase", "-car")
    assert Condition(VARIATION, "purchase", "-car").format() == "purchase/-car"
    assert Condition.parse("purchase/--car", LOO) == Condition(LOO, "purchase", "-car")


@pytest.mark.parametrize(
    ("name", "scope"),
    [
        ("purchase", LOO),
        ("purchase/car", LOO),
        ("purchase", VARIATION),
        ("purchase/", VARIATION),
        ("/car", VARIATION),
        ("purchase", CROSS),
        ("-", CROSS),
        ("", DOMAIN),
        ("", None),
    ],
)
def test_names_that_are_not_conditions_of_their_scope(name, scope):
    with pytest.raises(ValueError, match="not a"):
        Condition.parse(name, scope)


def test_conditions_check_their_fields():
    with pytest.raises(ValueError, match="not a scope: 'common'"):
        Condition("common", "purchase")
    with pytest.raises(ValueError, match="a domain condition has no variation"):
        Condition(DOMAIN, "purchase", "car")
    with pytest.raises(ValueError, match="not pooled"):
        Condition(CROSS, "purchase").pool()


def test_pools_and_transfer_rows_by_hand():
    assert Condition(VARIATION, "purchase", "car").pool().format() == "purchase/*"
    assert Condition(LOO, "purchase", "car").pool().format() == "purchase/-*"
    labels = [c.selection_label() for _, c in CONDITIONS[:6]]
    assert labels == [
        "purchase (variation masks)",
        "purchase (leave-one-out masks)",
        "purchase",
        "-purchase",
        "purchase (variation masks)",
        "purchase (leave-one-out masks)",
    ]


def test_scope_selections_by_hand():
    variations = {"car": ["a", "b", "c"], "job": ["x"]}
    assert scope_selections(VARIATION, variations) == {
        "car/a": {"car": ["a"]},
        "car/b": {"car": ["b"]},
        "car/c": {"car": ["c"]},
        "job/x": {"job": ["x"]},
    }
    # one variation leaves nothing out
    assert scope_selections(LOO, variations) == {
        "car/-a": {"car": ["b", "c"]},
        "car/-b": {"car": ["a", "c"]},
        "car/-c": {"car": ["a", "b"]},
    }
    assert scope_selections(DOMAIN, variations) == {"car": {"car": ["a", "b", "c"]}, "job": {"job": ["x"]}}
    assert scope_selections(CROSS, variations) == {"-car": {"job": ["x"]}, "-job": {"car": ["a", "b", "c"]}}
    assert scope_selections(CROSS, {"car": ["a", "b"]}) == {}  # one domain has no other


# (name, setting) of every kind of setting, written out by hand.
SETTINGS = [
    ("tau=0.15,0.15;select=focal", Setting(TAU, 0.15, 0.15, "focal")),
    ("tau=0.4,0.35;select=reference", Setting(TAU, 0.4, 0.35, "reference")),
    ("fraction=0.01", Setting(FRACTION, 0.01)),
    ("share=0.039", Setting(SHARE, 0.039)),
    ("share=1", Setting(SHARE, 1)),
    ("k=40", Setting(K, 40)),
    ("layers=all", Setting(LAYERS, "all")),
    ("layers=3", Setting(LAYERS, 3)),
]


@pytest.mark.parametrize(("name", "setting"), SETTINGS)
def test_setting_names_both_ways(name, setting):
    assert setting.format() == name
    parsed = Setting.parse(name)
    assert parsed == setting and type(parsed.value) is type(setting.value)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "k",
        "k=",
        "depth=3",
        "k=3;share=0.1",
        "tau=0.1;select=focal",
        "tau=0.1,0.2",
        "tau=0.1,0.2,0.3;select=focal",
        "layers=some",
        "layers=",
    ],
)
def test_names_that_are_not_settings(name):
    with pytest.raises(ValueError, match="not a setting"):
        Setting.parse(name)


def test_settings_of_each_unit_by_hand():
    weights = {"tau": [[0.15, 0.15], [0.4, 0.35]], "select": ["focal", "reference"]}
    assert settings("weights", weights) == [
        "tau=0.15,0.15;select=focal",
        "tau=0.15,0.15;select=reference",
        "tau=0.4,0.35;select=focal",
        "tau=0.4,0.35;select=reference",
    ]
    assert settings("neurons", {"fraction": [0.01, 0.05], "k": [3]}) == [
        "fraction=0.01",
        "fraction=0.05",
        "k=3",
    ]
    assert settings("heads", {"share": [0.039], "k": [40]}) == ["share=0.039", "k=40"]
    assert settings("heads", {"k": [40]}) == ["k=40"]
    assert settings("directions", {"layers": ["all", 2]}) == ["layers=all", "layers=2"]
    assert Setting(LAYERS, "all").count(31) == 31 and Setting(LAYERS, 4).count(31) == 4
    assert SHARE_KEYS == {"neurons": "fraction", "heads": "share"}


@pytest.mark.parametrize(
    ("share", "total", "count"),
    [
        (0.039, 1024, 40),  # the paper's 40 of 1,024 heads: 39.936
        (0.01, 8192, 82),  # 81.92
        (0.1, 30, 3),  # 3.0000000000000004
        (1, 6, 6),
        # ties go to the even neighbour (Python's round), never always up or always down
        (0.25, 10, 2),  # 2.5
        (0.5, 5, 2),  # 2.5
        (0.625, 4, 2),  # 2.5
        (0.125, 12, 2),  # 1.5
        (0.5, 7, 4),  # 3.5
        # at least one
        (0.001, 100, 1),  # 0.1
        (0.5, 1, 1),  # 0.5 rounds to 0
        (0.004, 100, 1),  # 0.4
    ],
)
def test_share_count_by_hand(share, total, count):
    assert share_count(share, total) == count
    assert Setting(SHARE, share).count(total) == count


def test_a_count_setting_is_its_count_and_tau_has_none():
    assert Setting(K, 40).count(1024) == 40
    with pytest.raises(ValueError, match="per matrix"):
        Setting.parse("tau=0.15,0.15;select=focal").count(100)


def test_both_users_of_the_rule_count_alike():
    """The masks' top units and the greedy order's steps take the same count from a share."""
    import torch

    from biasprune.greedy import greedy_steps
    from biasprune.masks import select_units

    ranking = {"0": torch.arange(6.0), "1": torch.arange(4.0)}  # 10 heads
    for share in (0.25, 0.35, 0.05, 1):
        chosen = select_units(ranking, "heads", Setting(SHARE, share).format())
        assert sum(int(v.sum()) for v in chosen.values()) == share_count(share, 10)
        assert greedy_steps(10, {"share": [share], "k": []}) == share_count(share, 10)
    assert greedy_steps(10, {"share": [0.25], "k": [7]}) == 7
    assert greedy_steps(10, {"share": [], "k": [40]}) == 10  # never more steps than heads


def test_levels_by_hand():
    assert LEVELS == (
        "variation",
        "leave-one-out",
        "domain (in-sample)",
        "domain (transfer)",
        "cross (held out)",
    )
    assert [generalisation(scope, True) for scope in SCOPES] == [
        "variation",
        "leave-one-out",
        IN_CONTEXT,
        None,
    ]
    assert [generalisation(scope, False) for scope in SCOPES] == [
        "variation",
        "leave-one-out",
        TRANSFER,
        HELD_OUT,
    ]
    with pytest.raises(ValueError, match="not a scope"):
        generalisation("common", True)


def test_controls_scopes_and_labels():
    assert (PRUNED, RANDOM, MATCHED, GENERIC, BASE) == ("pruned", "random", "matched", "generic", "base")
    assert CONTROLS == ("random", "matched", "generic")
    assert units_label("weights", "wanda") == "weights/wanda"
    frame = pd.DataFrame({"unit": ["heads"], "method": ["name_attention"]})
    assert units_label(frame["unit"], frame["method"]).tolist() == ["heads/name_attention"]


def test_the_config_schema_offers_exactly_the_scopes():
    """The schema's scope choices and default are the registry's (set when it is loaded), not a list of its
    own that could drift."""
    from biasprune.schema import load_schema

    masks = load_schema("config")["properties"]["masks"]["properties"]
    for key in ("scopes", "random_scopes"):
        assert tuple(masks[key]["items"]["enum"]) == SCOPES == ("variation", "loo", "domain", "cross")
        assert tuple(masks[key]["default"]) == SCOPES


# -- no other module spells condition or setting names -----------------------------------------------------

SPLITS = {"split", "partition"}
SPLIT_ON = {"/", ";", "="}
TRIMS = {"startswith", "endswith", "lstrip", "rstrip", "removeprefix", "removesuffix"}
TRIM_OF = {"-", "*", "/-", "/*", "/-*"}
SPELLINGS = ("tau=", "fraction=", "share=", "select=", "k=", "layers=", "/-", "/*")


def _docstrings(tree) -> set[int]:
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return {
        id(node.body[0].value)
        for node in nodes
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }


def spelled_names(source: str) -> dict[int, str]:
    """{line: what} of the places in `source` that build or take apart condition or setting names by hand."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            first = node.args[0]
            text = first.value if isinstance(first, ast.Constant) else None
            if (node.func.attr in SPLITS and text in SPLIT_ON) or (
                node.func.attr in TRIMS and text in TRIM_OF
            ):
                found.setdefault(node.lineno, f".{node.func.attr}({text!r})")
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            if parts and isinstance(parts[0], ast.Constant) and parts[0].value == "-" and len(parts) > 1:
                found.setdefault(node.lineno, "f'-{...}'")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and any(s in node.value for s in SPELLINGS)
        ):
            found.setdefault(node.lineno, repr(node.value))
    return dict(sorted(found.items()))


def test_the_guard_catches_hand_spelled_names():
    source = (
        '"""A docstring may say `{d}/-{v}` and share=0.039."""\n'
        'a = f"{d}/-{v}"\n'
        'b = f"-{d}"\n'
        'c = name.split(";")\n'
        'd = name.endswith("*")\n'
        'e = f"share={x}"\n'
        'f = condition.lstrip("-").split("/")[0]\n'
        'g = key.split(".")\n'
    )
    assert list(spelled_names(source)) == [2, 3, 4, 5, 6, 7]


def test_no_module_but_the_vocabulary_spells_names():
    scripts = ROOT / "workflow" / "scripts"
    files = sorted((scripts / "biasprune").glob("*.py")) + sorted(scripts.glob("*.py"))
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in files
        if path.name != "vocabulary.py" and (lines := spelled_names(path.read_text()))
    }
    assert not offenders, offenders
