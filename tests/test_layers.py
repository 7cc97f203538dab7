"""The import graph of the whole tree: no circle, and the import-linter contracts bite.

`make test` runs lint-imports itself; these tests keep the contracts honest: the
forbidden contract names every array layer below the API, a circle anywhere (also
inside one package, which the layers contracts do not see) fails, and an upward
import in a copy of the tree breaks a contract (a control, so a contract that no
longer checks anything is noticed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["backend", "csi_driver", "replication_sidecar", "ccopy", "ccopy_common", "ccopy_api"]


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in modules:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, at = work.pop()
            if at == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for position in range(at, len(edges[node])):
                target = edges[node][position]
                if target not in index:
                    work.append((node, position + 1))
                    work.append((target, 0))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    return found


def test_no_circle_in_the_whole_tree():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.d", "p.a")):
        graph.add_import(importer=importer, imported=imported)
    assert circles(graph) == [["p.a", "p.b", "p.c"]]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_no_contract_ignores_an_import():
    assert all("ignore_imports" not in contract for contract in contracts())


def test_the_array_below_its_api_is_every_layer_but_the_api():
    inside = next(c for c in contracts() if c.get("containers") == ["backend"])
    layers = {f"backend.{m.strip()}" for layer in inside["layers"] for m in layer.split("|")}
    forbidden = next(c for c in contracts() if c["type"] == "forbidden")
    assert set(forbidden["source_modules"]) == layers - {"backend.api"}


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}\n")
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)}
    )


def test_the_tree_as_it_is_keeps_every_contract(tmp_path):
    done = lint_copy(tmp_path, "ccopy_common/units.py", "")
    assert done.returncode == 0, done.stdout


def test_an_upward_import_breaks_a_contract(tmp_path):
    """The array's write path importing the array it sits under: refused."""
    done = lint_copy(tmp_path, "backend/write_path.py", "import backend.array  # noqa")
    assert done.returncode == 1
    assert "Inside the array" in done.stdout and "BROKEN" in done.stdout
