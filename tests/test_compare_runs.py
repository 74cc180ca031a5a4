"""scripts/compare_runs.py, the before/after record of a refactor: equal outputs pass, and each kind of change
(a table's value, a CSV byte, an SVG's drawing, a missing file) is named."""

import importlib.util

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import ROOT

spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts/compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)

SVG = (
    '<svg><clipPath id="{clip}"><rect/></clipPath><path id="{marker}" d="M 0 2"/>'
    '<use xlink:href="#{marker}" x="{x}"/><g clip-path="url(#{clip})"/>'
    '<image xlink:href="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgp0123456789a" id="{image}"/>'
    '<image xlink:href="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgp0123456789a" id="{image2}"/></svg>'
)


def make_run(
    folder,
    value=1.0,
    day="2026-12-05",
    x="1.5",
    ids=("p0123456789", "m0123456789", "image0123456789", "image0123456789"),
):
    """A run folder as the workflow writes it: a table with the run's day in its metadata, a CSV and an SVG
    whose matplotlib ids are `ids`."""
    (folder / "results/m/metrics").mkdir(parents=True)
    (folder / "reports/m/figures").mkdir(parents=True)
    table = pa.Table.from_pandas(pd.DataFrame({"smd": [value, 0.25]}), preserve_index=False)
    pq.write_table(
        table.replace_schema_metadata({b"day": day.encode()}), folder / "results/m/metrics/t.parquet"
    )
    (folder / "reports/m/t.csv").write_text(f"smd\n{value}\n")
    clip, marker, image, image2 = ids
    (folder / "reports/m/figures/f.svg").write_text(
        SVG.format(clip=clip, marker=marker, image=image, image2=image2, x=x)
    )
    return folder


def test_runs_that_differ_only_in_metadata_and_random_svg_ids_are_identical(tmp_path, capsys):
    """The after run's ids are all different, its two equal images have two ids where the before run's share
    one (matplotlib's random ids against its salted ones)."""
    before = make_run(tmp_path / "before" / "pytest-0" / "study")
    after = make_run(
        tmp_path / "after",
        day="2026-12-06",
        ids=("pabcdefabcd", "m9876543210", "imagefedcba9876", "image1111111111"),
    )
    assert compare_runs.compare(tmp_path / "before", after) == []
    assert compare_runs.main([str(before), str(after)]) == 0
    assert capsys.readouterr().out.strip() == "3 of 3 outputs identical"


def test_a_changed_value_a_moved_mark_and_a_missing_file_are_each_named(tmp_path):
    before = make_run(tmp_path / "before")
    after = make_run(tmp_path / "after", value=1.5, x="1.6")
    (after / "reports/m/figures/extra.png").write_bytes(b"png")
    assert sorted(compare_runs.compare(before, after)) == [
        "differs: reports/m/figures/f.svg",
        "differs: reports/m/t.csv",
        "differs: results/m/metrics/t.parquet",
        "new after: reports/m/figures/extra.png",
    ]
    # two marks that share an id in one file and not in the other are not the same drawing
    swapped = make_run(
        tmp_path / "swapped", ids=("p0123456789", "p0123456789", "image0123456789", "image0123456789")
    )
    assert compare_runs.compare(before, swapped) == ["differs: reports/m/figures/f.svg"]
    assert compare_runs.main([str(before), str(after)]) == 1
