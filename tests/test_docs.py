"""The documentation holds together: the README stays a short guide, every relative link and anchor in the
Markdown files resolves, and every measured figure in docs/performance.md names the commit and day it was
measured at."""

import re

import pytest
from conftest import ROOT

PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "config/README.md", *ROOT.glob("docs/*.md")]
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMIT = re.compile(r"\b[0-9a-f]{7}\b")
DAY = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens and underscores dropped, spaces to
    hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_the_slug_matches_githubs_for_the_headings_these_pages_use():
    assert slug("Paper scale: memory that follows the model, and the paper's design in GPU-hours") == (
        "paper-scale-memory-that-follows-the-model-and-the-papers-design-in-gpu-hours"
    )
    assert slug("Results of the default study (embedded model, measured 2026-12-01)") == (
        "results-of-the-default-study-embedded-model-measured-2026-12-01"
    )
    assert slug("`make test`") == "make-test"


def test_the_readme_is_a_short_guide():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        missing_anchor = file.exists() and anchor and file.suffix == ".md" and anchor not in anchors(file)
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_every_measured_figure_in_performance_names_its_commit_and_day():
    """A table row names both, or the table is followed by a paragraph that does (a table of one run)."""
    lines = (ROOT / "docs/performance.md").read_text().splitlines()
    undated = []
    for number, line in enumerate(lines):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if number + 1 < len(lines) and lines[number + 1].startswith("|---"):
            continue  # a header
        end = next(
            k for k in range(number, len(lines) + 1) if k == len(lines) or not lines[k].startswith("|")
        )
        after = next((text for text in lines[end:] if text.strip()), "")
        dated = lambda text: COMMIT.search(text) and DAY.search(text)  # noqa: E731
        if not (dated(line) or dated(after)):
            undated.append(line[:80])
    assert not undated, undated
