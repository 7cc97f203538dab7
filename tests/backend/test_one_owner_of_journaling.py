"""Where an LDEV's writes go (journal, bitmap) is decided in one module: the journal groups.

Everywhere else (pair operations, failback, the write path at journal full, the
runtimes when they open an LDEV) asks them. Read from the code, so a new
`runtime.journal = ...` elsewhere fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"
OWNER = BACKEND / "replication" / "journal_groups.py"


def journal_assignments(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else []
        targets = [t for target in targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "journal" and not (
                isinstance(target.value, ast.Name) and target.value.id == "self"
            ):
                asked = isinstance(node.value, ast.Call) and ast.unparse(node.value.func).endswith("route_on_open")
                if not asked:
                    found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_the_journal_groups_set_whether_writes_are_journaled():
    elsewhere = {
        str(path.relative_to(BACKEND)): found
        for path in BACKEND.rglob("*.py")
        if path != OWNER and (found := journal_assignments(path))
    }
    assert elsewhere == {}
    assert journal_assignments(OWNER)  # the owner does set it: the check reads the right thing


def test_the_check_sees_an_assignment(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f(runtime, j):\n    runtime.journal = j\n    runtime.journal, t = groups.route_on_open(1)\n"
        "    runtime.diff, runtime.journal = None, j\n"
    )
    assert [line for line, _ in journal_assignments(module)] == [2, 4]
