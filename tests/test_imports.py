"""The library's import graph, read from its files: no cycle, no chain longer than MAX_CHAIN modules, and the
table and verdict modules import neither torch nor matplotlib (the tables env has neither)."""

import ast
import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
PACKAGE = SCRIPTS / "biasprune"
MAX_CHAIN = 6
# Modules the `tables` env runs (condition_metrics, findings, the CSV bundle) or that only read tables.
# The table and verdict modules (their rules run in the tables env) and what the Snakefile loads to plan jobs.
TABLE_MODULES = ("metrics", "stats", "conditions", "findings", "vocabulary", "specs", "parse")
TABLE_MODULES += ("report.appendix", "report.pages", "report.tables")
TABLE_MODULES += ("study", "jobs", "methods", "schema")
HEAVY = ("torch", "matplotlib")


def library_imports(source: str, modules: set[str], package: str = "") -> set[str]:
    """Library modules `source` imports anywhere: at module level, inside functions, under TYPE_CHECKING;
    relative (`from .x import`, `from . import x`, `from ..x import` in a subpackage) or absolute
    (`import biasprune.x`, `from biasprune import x`, `from biasprune.sub.x import`). `package`: the dotted
    subpackage the importing module sits in ("" for the package itself); modules are named as dotted paths
    below biasprune ("io", "report.pages")."""
    here = package.split(".") if package else []

    def module_of(parts: list[str]) -> str | None:  # the longest leading part of `parts` that is a module
        for end in range(len(parts), 0, -1):
            if (name := ".".join(parts[:end])) in modules:
                return name
        return None

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = here[: len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif (node.module or "").split(".")[0] == "biasprune":
                target = node.module.split(".")[1:]
            else:
                continue
            found |= {
                hit for alias in node.names if (hit := module_of([*target, alias.name]) or module_of(target))
            }
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "biasprune" and (hit := module_of(parts[1:])):
                    found.add(hit)
    return found


def module_files() -> dict[str, object]:
    """{dotted module name below biasprune: its file} of every module of the package and its subpackages (the
    packages' __init__ files aside: they hold a docstring only)."""
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py"
    }


def import_graph() -> dict[str, set[str]]:
    """{module: library modules it imports} of every module of the package."""
    files = module_files()
    return {
        name: library_imports(path.read_text(), set(files), name.rpartition(".")[0]) - {name}
        for name, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (depth-first, modules in sorted order)."""
    state: dict[str, str] = {}  # absent: unseen; "open": on the current path; "done": no cycle through it
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain of an acyclic `graph`, as the modules on it (first: the importer)."""
    memo: dict[str, list[str]] = {}
    open_: set[str] = set()

    def chain(node: str) -> list[str]:
        if node in open_:
            raise ValueError(f"{node} is on a cycle")
        if node not in memo:
            open_.add(node)
            below = [chain(nxt) for nxt in sorted(graph.get(node, ()))]
            open_.discard(node)
            memo[node] = [node, *max(below, key=len, default=[])]
        return memo[node]

    return max((chain(node) for node in sorted(graph)), key=len, default=[])


def test_the_cycle_finder_finds_a_planted_cycle():
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}
    assert find_cycle(acyclic) is None
    planted = acyclic | {"c": {"d"}}  # d -> a -> c -> d
    cycle = find_cycle(planted)
    assert cycle is not None and cycle[0] == cycle[-1]
    assert {tuple(cycle[i : i + 2]) for i in range(len(cycle) - 1)} <= {
        (a, b) for a, targets in planted.items() for b in targets
    }
    assert set(cycle) == {"a", "c", "d"} or set(cycle) == {"a", "b", "c", "d"}
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_longest_chain_of_a_hand_made_graph():
    graph = {"a": {"b", "d"}, "b": {"c"}, "c": {"d"}, "d": set(), "e": {"d"}}
    assert longest_chain(graph) == ["a", "b", "c", "d"]
    assert longest_chain({"x": set()}) == ["x"]
    with pytest.raises(ValueError, match="on a cycle"):
        longest_chain({"a": {"b"}, "b": {"a"}})


def test_the_import_reader_sees_every_form():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from .a import x\n"
        "from . import b, c\n"
        "import biasprune.d\n"
        "from biasprune import e\n"
        "from biasprune.f import y\n"
        "if TYPE_CHECKING:\n"
        "    from .g import z\n"
        "def late():\n"
        "    from .h import w\n"
        "    import biasprune.i as j\n"
    )
    modules = set("abcdefghi") | {"numpy", "typing"}
    assert library_imports(source, modules) == set("abcdefghi")


def test_the_import_reader_resolves_a_subpackage_s_relative_and_absolute_imports():
    source = (
        "from ..io import x\n"  # the package's io, from report/figures.py
        "from . import pages\n"
        "from .placement import y\n"
        "from .. import stats\n"
        "from biasprune.report import tables\n"
        "import biasprune.report.appendix\n"
    )
    modules = {"io", "stats", "report.pages", "report.placement", "report.tables", "report.appendix", "pages"}
    expected = {"io", "stats", "report.pages", "report.placement", "report.tables", "report.appendix"}
    assert library_imports(source, modules, "report") == expected


def test_the_graph_covers_every_module():
    graph = import_graph()
    files = {path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert len(graph) == len(files) and "report.figures" in graph and "io" in graph
    assert "vocabulary" in graph["conditions"] and "metrics" in graph["conditions"]
    assert graph["vocabulary"] == set() and graph["specs"] == set()


def test_the_library_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_chain_is_longer_than_the_limit():
    graph = import_graph()
    assert find_cycle(graph) is None
    chain = longest_chain(graph)
    assert len(chain) <= MAX_CHAIN, f"{len(chain)} modules deep: " + " -> ".join(chain)


def test_specs_and_the_vocabulary_import_nothing_but_errors():
    graph = import_graph()
    assert graph["specs"] <= {"errors"} and graph["vocabulary"] <= {"errors"}


@pytest.mark.parametrize("module", TABLE_MODULES)
def test_table_modules_load_neither_torch_nor_matplotlib(module):
    code = (
        f"import json, sys; sys.path.insert(0, {str(SCRIPTS)!r}); import biasprune.{module}; "
        f"print(json.dumps([name for name in {list(HEAVY)!r} if name in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == [], f"biasprune.{module} loads {result.stdout}"


def contributing_layers() -> list[list[str]]:
    """The layers of CONTRIBUTING.md's library table, lowest first: the modules each row names."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text.split("| layer | modules |", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    layers = []
    for row in rows:
        cell = row.split("|")[2]
        while re.search(r"\([^()]*\)", cell):  # what a module holds, in brackets, names other things
            cell = re.sub(r"\([^()]*\)", "", cell)
        layers.append(re.findall(r"`([\w.]+)`", cell))
    return layers


def test_contributing_lists_every_module_once_and_no_import_points_up_its_layers():
    """The table is the library's map: every module in exactly one layer, and a module imports only modules
    of its own layer or a lower one (an upward arrow would mean the map, or the code, is wrong)."""
    layers = contributing_layers()
    listed = [module for layer in layers for module in layer]
    graph = import_graph()
    assert sorted(listed) == sorted(graph), "modules missing or listed twice"
    rank = {module: number for number, layer in enumerate(layers) for module in layer}
    upward = sorted(
        f"{module} -> {imported}"
        for module, imports in graph.items()
        for imported in imports
        if module in rank and rank[imported] > rank[module]
    )
    assert not upward, upward
