"""The one write path's order of steps is written in three places: the module's
docstring, the code's numbered comments and the README. They must say the same."""

from __future__ import annotations

import re
from pathlib import Path

import backend.write_path as write_path

ROOT = Path(__file__).resolve().parents[2]
# "3. journal append: ...", "# 3. journal append when ...": the number and the step's name.
STEP = re.compile(r"^\s*(?:#\s*)?(\d)\. ([a-z-]+(?: [a-z-]+)*?)(?=:| when|$)", re.MULTILINE)


def steps(text: str) -> list[tuple[str, str]]:
    return [(number, name.strip()) for number, name in STEP.findall(text)]


def test_the_docstring_the_code_and_the_readme_list_the_same_steps():
    source = Path(write_path.__file__).read_text()
    documented = steps(write_path.__doc__ or "")
    coded = steps(source[source.index("def apply") :])
    readme = ROOT / "README.md"
    listed = steps(readme.read_text().split("The one write path", 1)[1].split("- `make test`", 1)[0])
    assert documented == coded == listed
    assert [n for n, _ in documented] == ["1", "2", "3", "4", "5"]
    assert [name for _, name in documented] == [
        "validate", "snapshot copy-on-write", "journal append", "data", "durability",
    ]  # fmt: skip
