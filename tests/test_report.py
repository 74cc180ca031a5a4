"""Findings computed from the tables, and the appendix rendered safely (escaped, self-contained)."""

import base64
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from biasprune.appendix import THRESHOLDS, findings_rows, html_table, render
from biasprune.findings import FAILS, HOLDS, findings

# (unit, method, generalisation level) -> reduction; random controls reduce 0.05 everywhere.
LEVEL_ROWS = {
    "variation": dict(scope="variation", condition="d/*", in_sample=True),
    "loo": dict(scope="loo", condition="d/-*", in_sample=False),
    "in": dict(scope="domain", condition="d", in_sample=True),
    "transfer": dict(scope="domain", condition="e", in_sample=False),
    "cross": dict(scope="cross", condition="-d", in_sample=False),
}


def conditions(reductions: dict) -> pd.DataFrame:
    rows = []
    for (unit, method), levels in reductions.items():
        for level, value in levels.items():
            rows.append(
                {
                    "unit": unit,
                    "method": method,
                    "setting": "s",
                    "control": "pruned",
                    "seed": -1,
                    "domain": "d",
                    "variation": None,
                    "level": "domain",
                    "reduction": value,
                    "reduction_low": value - 0.1,
                    "reduction_high": value + 0.1,
                    "random_reduction_mean": 0.05,
                    "invalid_rate": 0.02,
                    "base_invalid_rate": 0.0,
                    "inlier_ratio": 0.95,
                    **LEVEL_ROWS[level],
                }
            )
    return pd.DataFrame(rows)


def verdicts(table):
    return {(row["claim"], row["units"]): row["verdict"] for row in table.to_dict("records")}


def test_findings_follow_the_numbers():
    table = findings(
        conditions(
            {
                ("weights", "wanda"): {
                    "variation": 0.6,
                    "loo": 0.4,
                    "in": 0.5,
                    "transfer": 0.2,
                    "cross": 0.1,
                },
                ("heads", "name_attention"): {
                    "variation": 0.3,
                    "loo": 0.35,
                    "in": 0.08,
                    "transfer": 0.01,
                    "cross": 0.0,
                },
            }
        )
    )
    got = verdicts(table)
    assert got[1, "weights/wanda"] == HOLDS  # CI low 0.4 > 0, invalid +0.02, inliers 0.95
    assert got[1, "heads/name_attention"] == FAILS  # CI low -0.02 includes zero
    assert got[2, "weights/wanda vs heads/name_attention"] == HOLDS  # 0.5 > 0.08
    assert got[3, "weights/wanda"] == HOLDS  # 0.6 > 0.4 > mean(0.2, 0.1)
    assert got[3, "heads/name_attention"] == FAILS  # held-out 0.35 above the variation's 0.3
    assert got[4, "weights/wanda"] == HOLDS  # random 0.05 < transfer 0.15 < in-context 0.5
    assert got[4, "heads/name_attention"] == FAILS  # transfer 0.005 below random 0.05
    evidence = table.set_index(["claim", "units"]).loc[(3, "weights/wanda"), "evidence"]
    assert "variation +0.60, held-out variation +0.40, other context +0.15" in evidence


def test_more_invalid_answers_than_allowed_fail_claim_one():
    frame = conditions({("weights", "wanda"): {"in": 0.5}})
    frame["invalid_rate"] = 0.2
    assert verdicts(findings(frame))[1, "weights/wanda"] == FAILS


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
    found = pd.DataFrame(
        [{"claim": 1, "statement": "s", "units": "weights/wanda", "verdict": HOLDS, "evidence": "a < b & c"}]
    )
    return {
        "model": {
            "key": "tiny",
            "n_layers": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "d_mlp": 48,
            "dtype": "float32",
        },
        "readout": {"mode": "expected"},
        "groups": ["White", "Black"],
        "metrics": {"confidence": 0.95, "bootstrap": 100},
        "names": [{"name": "D'Andre & <b>", "race": "Black", "gender": "male"}],
        "examples": [
            {"domain": "purchase", "variations": [EVIL], "text": f"I want to buy a {EVIL}", "prefix": "$"}
        ],
        "methods": '{"masks": "<none>"}',
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
    assert 'id="findings-table"' in html and ">holds<" in html
    assert "0.25" in html  # numbers rounded for reading; NaN left empty
    assert ">nan<" not in html.lower()


def test_a_missing_value_is_an_error_not_an_empty_section():
    broken = context()
    del broken["limitations"]
    with pytest.raises(Exception, match="limitations"):
        render(broken)
