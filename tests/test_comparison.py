"""The model comparison: components placed by relative depth (computed by hand for a 2-layer and a 4-layer
model), long tables holding exactly each model's rows, figures on one scale, a self-contained HTML page
that shows every model's own verdicts and intervals side by side."""

import base64
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from biasprune.findings import HOLDS, UNKNOWN
from biasprune.report import comparison, figures
from biasprune.report.comparison import ModelRun
from biasprune.report.placement import depth_bin, relative_depth

BINS = ["0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0"]


def manifest(unit, method, conditions, settings=("s",), scope="domain"):
    """A mask manifest holding only what the placement reads: counts per condition, setting and key."""
    return {
        "unit": unit,
        "method": method,
        "scope": scope,
        "settings": list(settings),
        "conditions": {
            name: {"counts": {setting: counts for setting in settings}} for name, counts in conditions.items()
        },
    }


def baseline_rows(smd, low, high):
    """Two variations of `purchase` and the domain row (the domain row has no signed SMD)."""
    rows = [
        {"domain": "purchase", "variation": v, "level": "variation", "smd": s, "smd_low": lo, "smd_high": hi}
        for v, s, lo, hi in zip(("chair", "car"), smd, low, high, strict=True)
    ]
    rows.append({"domain": "purchase", "variation": None, "level": "domain", "smd": np.nan})
    frame = pd.DataFrame(rows).assign(group_ref="White", group_focal="Black", model="stale")
    frame["measurable"] = frame["smd_low"] > 0
    frame["abs_smd"] = frame["smd"].abs()
    frame.loc[2, "abs_smd"] = np.mean(np.abs(smd))
    frame["abs_smd_p"] = [0.5, 0.01, 0.2]
    return frame


def transfer_rows(reductions):
    """A 2 x 2 transfer matrix of weights/wanda (selection x evaluated); NaN = an empty mask."""
    cells = [("purchase", "purchase"), ("purchase", "hiring"), ("hiring", "purchase"), ("hiring", "hiring")]
    return pd.DataFrame(
        [
            {
                "unit": "weights",
                "method": "wanda",
                "setting": "tau",
                "selection": s,
                "evaluated": e,
                "in_sample": s == e,
                "vacuous": bool(np.isnan(r)),
                "reduction": r,
                "reduction_low": r - 0.1,
                "reduction_high": r + 0.1,
            }
            for (s, e), r in zip(cells, reductions, strict=True)
        ]
    ).assign(model="stale")


def finding(claim, units, verdict, estimate, low, high, contrast="excess", primary=True):
    return {
        "claim": claim,
        "statement": f"claim {claim}",
        "units": units,
        "setting": "tau",
        "verdict": verdict,
        "primary": primary,
        "contrast": contrast,
        "estimate": estimate,
        "low": low,
        "high": high,
        "cells": 3,
        "cells_note": "3 of 4 cells",
        "evidence": "e",
    }


@pytest.fixture
def runs():
    """`small`: 2 layers, heads selected in layers 0 and 1 (purchase) and nothing (hiring), and a direction
    edit of the last residual layer; `deep`: 4 layers, weight entries in layers 0 and 3."""
    small = ModelRun(
        baseline=baseline_rows([-0.2, 0.5], [-0.5, 0.1], [0.1, 0.8]),
        transfer=transfer_rows([0.5, -0.2, np.nan, 0.1]),
        findings=pd.DataFrame(
            [
                finding(1, "weights/wanda", UNKNOWN, np.nan, np.nan, np.nan),
                finding(3, "weights/wanda", UNKNOWN, 0.05, -0.2, 0.3),
            ]
        ),
        manifests=[
            manifest("heads", "name_attention", {"purchase": {"0": 1, "1": 3}, "hiring": {"0": 0, "1": 0}}),
            manifest("directions", "leace", {"purchase": {"0": 0, "1": 0, "2": 1}}),
        ],
        check={"n_layers": 2, "architecture": "LlamaForCausalLM", "n_heads": 4},
    )
    deep = ModelRun(
        baseline=baseline_rows([1.2, 0.3], [0.4, -1.0], [2.0, 0.9]),
        transfer=transfer_rows([0.9, -0.6, 0.3, 0.2]),
        findings=pd.DataFrame(
            [
                finding(1, "weights/wanda", HOLDS, 0.4, 0.1, 0.7),
                finding(3, "weights/wanda", UNKNOWN, 0.02, -0.1, 0.2),
                finding(5, "directions/leace", HOLDS, 0.3, 0.2, 0.4),
            ]
        ),
        manifests=[
            manifest(
                "weights",
                "wanda",
                {"purchase": {"0.q_proj": 2, "0.down_proj": 2, "1.q_proj": 0, "3.up_proj": 4}},
            )
        ],
        check={"n_layers": 4, "architecture": "Qwen2ForCausalLM", "n_heads": 8},
    )
    return {"small": small, "deep": deep}


def test_layers_of_a_2_and_a_4_layer_model_sit_at_their_relative_depths():
    # a block's middle: (l + 0.5) / n; a residual layer: l / n
    assert [relative_depth(layer, 2) for layer in range(2)] == [0.25, 0.75]
    assert [relative_depth(layer, 4) for layer in range(4)] == [0.125, 0.375, 0.625, 0.875]
    assert [relative_depth(layer, 2, residual=True) for layer in range(3)] == [0.0, 0.5, 1.0]
    # five bins of 0.2: 0.25 -> 1, 0.75 -> 3; 0.125 -> 0, 0.375 -> 1, 0.625 -> 3, 0.875 -> 4
    assert [depth_bin(layer, 2) for layer in range(2)] == [1, 3]
    assert [depth_bin(layer, 4) for layer in range(4)] == [0, 1, 3, 4]
    # the residual stream leaving the last block (depth 1) falls in the last bin, the input in the first
    assert [depth_bin(layer, 2, residual=True) for layer in range(3)] == [0, 2, 4]
    assert [depth_bin(layer, 4, residual=True) for layer in range(5)] == [0, 1, 2, 3, 4]
    # 0.2 exactly (residual layer 1 of 5) opens the second bin
    assert depth_bin(1, 5, residual=True) == 1
    with pytest.raises(ValueError, match="layer 4 outside a model of 4 layers"):
        depth_bin(4, 4)
    assert depth_bin(4, 4, residual=True) == 4


def test_the_placement_table_holds_every_mask_and_bin_with_shares_computed_by_hand(runs):
    table = comparison.placement_table(runs)
    # small: heads 2 masks + directions 1 mask; deep: weights 1 mask; 5 bins each
    assert len(table) == (2 + 1 + 1) * 5
    assert list(dict.fromkeys(table["model"])) == ["small", "deep"]
    share = table.set_index(["model", "units", "condition", "bin"])["share"].sort_index()
    count = table.set_index(["model", "units", "condition", "bin"])["count"].sort_index()
    heads = [share["small", "heads/name_attention", "purchase", b] for b in BINS]
    assert heads == [0, 0.25, 0, 0.75, 0]
    assert [count["small", "heads/name_attention", "purchase", b] for b in BINS] == [0, 1, 0, 3, 0]
    # a mask that selects nothing has no share (not 0)
    assert share.loc["small", "heads/name_attention", "hiring"].isna().all()
    assert count.loc["small", "heads/name_attention", "hiring"].eq(0).all()
    # the last residual layer of a 2-layer model: depth 1
    assert [share["small", "directions/leace", "purchase", b] for b in BINS] == [0, 0, 0, 0, 1]
    # deep: layer 0 (4 entries over two matrices) at 0.125, layer 3 (4 entries) at 0.875
    assert [share["deep", "weights/wanda", "purchase", b] for b in BINS] == [0.5, 0, 0, 0, 0.5]
    assert set(table.loc[table["model"] == "deep", "domain"]) == {"purchase"}


def test_the_long_tables_hold_exactly_each_models_rows_in_the_models_order(runs):
    tables = comparison.comparison_tables(runs)
    assert set(tables) == {"baseline", "findings", "transfer", "placement"}
    for name in ("baseline", "findings", "transfer"):
        table = tables[name]
        assert table.columns[0] == "model"
        assert table["model"].tolist() == [
            m for m, run in runs.items() for _ in range(len(getattr(run, name)))
        ]
        for model, run in runs.items():
            own = table[table["model"] == model].drop(columns="model").reset_index(drop=True)
            expected = getattr(run, name).drop(columns="model", errors="ignore")
            pd.testing.assert_frame_equal(own, expected[own.columns], check_dtype=False)
    # a `model` column of a model's table is replaced by its key
    assert all(list(tables[name].columns).count("model") == 1 for name in tables)
    assert "stale" not in set(tables["baseline"]["model"]) | set(tables["transfer"]["model"])
    # each model keeps its own verdicts: nothing is pooled across models
    findings = tables["findings"].set_index(["model", "claim"])
    assert findings.loc[("small", 1), "verdict"] == UNKNOWN and findings.loc[("deep", 1), "verdict"] == HOLDS
    assert len(tables["findings"]) == 5


def test_every_transfer_matrix_is_coloured_on_one_range_with_one_colour_bar(runs):
    table = comparison.comparison_tables(runs)["transfer"]
    figure = figures.transfer_by_model(table)
    meshes = [axis.collections[0] for axis in figure.axes if axis.collections and axis.get_title()]
    assert len(meshes) == 2  # one matrix per model
    # the lowest and highest reduction over both models: -0.6 (deep) and 0.9 (deep); small spans -0.2..0.5
    assert all(mesh.get_clim() == pytest.approx((-0.6, 0.9)) for mesh in meshes)
    bars = [axis for axis in figure.axes if axis.get_ylabel() == "relative reduction of |SMD|"]
    assert len(bars) == 1 and len(figure.axes) == 3
    titles = [axis.get_title() for axis in figure.axes if axis.collections and axis.get_title()]
    assert [t.split("\n")[0] for t in titles] == ["small", "deep"]
    plt.close(figure)


def test_the_colour_range_clips_a_reduction_below_minus_one_as_each_matrix_is_drawn(runs):
    runs["deep"] = ModelRun(**{**runs["deep"].__dict__, "transfer": transfer_rows([0.9, -3.0, 0.3, 0.2])})
    figure = figures.transfer_by_model(comparison.comparison_tables(runs)["transfer"])
    meshes = [axis.collections[0] for axis in figure.axes if axis.collections and axis.get_title()]
    assert all(mesh.get_clim() == pytest.approx((-1.0, 0.9)) for mesh in meshes)
    plt.close(figure)


def test_the_baseline_panels_share_one_y_range_over_every_models_intervals(runs):
    table = comparison.comparison_tables(runs)["baseline"]
    figure = figures.baseline_by_model(table)
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == ["small", "deep"]
    # lowest interval end -1.0 (deep), highest 2.0 (deep): span 3, padded by 5% on both sides
    for axis in axes:
        assert axis.get_ylim() == pytest.approx((-1.15, 2.15))
    # each panel draws its own model's points
    points = [[line.get_ydata()[0] for line in axis.lines if line.get_marker() == "o"] for axis in axes]
    assert points == [[-0.2, 0.5], [1.2, 0.3]]
    plt.close(figure)


def test_the_placement_panels_share_x_on_0_1_and_one_y_with_the_pooled_shares(runs):
    pooled = comparison.figure_tables(comparison.comparison_tables(runs))["placement"]
    figure = figures.placement_by_depth(pooled)
    axes = figure.axes
    assert [axis.get_title() for axis in axes] == [
        "heads/name_attention\ns",
        "directions/leace\ns",
        "weights/wanda\ns",
    ]
    assert all(axis.get_xlim() == (0, 1) for axis in axes)
    assert len({axis.get_ylim() for axis in axes}) == 1
    assert axes[0].get_ylim()[1] == pytest.approx(1.05)  # the highest pooled share: 1
    heights = {
        (axis.get_title().split("\n")[0], bars.get_label()): [bar.get_height() for bar in bars]
        for axis in axes
        for bars in axis.containers
    }
    # heads of `small` pooled over purchase (1 + 3) and hiring (nothing): the same shares as purchase
    assert heights["heads/name_attention", "small"] == pytest.approx([0, 0.25, 0, 0.75, 0])
    assert heights["weights/wanda", "deep"] == pytest.approx([0.5, 0, 0, 0, 0.5])
    assert ("weights/wanda", "small") not in heights
    plt.close(figure)


class Page(HTMLParser):
    """Every src/href, the image sources, the page text, and the findings table's rows as cell texts."""

    def __init__(self):
        super().__init__()
        self.sources, self.images, self.text, self.rows = [], [], [], []
        self.table, self.cell = None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.sources += [value for name, value in attrs.items() if name in ("src", "href")]
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "table":
            self.table = attrs.get("id")
        if tag == "tr" and self.table == "findings-table":
            self.rows.append([])
        if tag in ("td", "th") and self.table == "findings-table":
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell))
            self.cell = None
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data.strip())


def test_the_page_puts_each_models_findings_with_their_intervals_side_by_side(runs, tmp_path):
    tables = comparison.comparison_tables(runs)
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    html = comparison.comparison_html(
        tables,
        comparison.figure_tables(tables)["placement"],
        checks={model: run.check for model, run in runs.items()},
        figures_png=[(name, png) for name in figures.COMPARISON],
        provenance_rows={"run_date": "today"},
    )
    page = Page()
    page.feed(html)
    # self-contained: every source is an embedded PNG, one per figure
    assert page.sources == page.images
    assert page.images == ["data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()] * 3
    text = " ".join(page.text)
    assert "small" in text and "deep" in text and "Qwen2ForCausalLM" in text
    header, *rows = page.rows
    assert header == ["claim", "units", "setting", "small", "deep"]
    by_claim = {row[0].split(".")[0]: row for row in rows}
    assert set(by_claim) == {"1", "3", "5"}
    # claim 1: inconclusive without an estimate for small, holds with its interval for deep
    assert by_claim["1"][3].startswith(UNKNOWN) and "excess: n/a" in by_claim["1"][3]
    assert by_claim["1"][4].startswith(HOLDS) and "excess: +0.400 [+0.100, +0.700]" in by_claim["1"][4]
    # claim 3: both inconclusive, each with its own interval (never averaged)
    assert "+0.050 [-0.200, +0.300]" in by_claim["3"][3] and "+0.020 [-0.100, +0.200]" in by_claim["3"][4]
    # claim 5 only in deep's run
    assert by_claim["5"][3] == "not in this run" and "+0.300 [+0.200, +0.400]" in by_claim["5"][4]
