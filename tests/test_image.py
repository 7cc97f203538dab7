"""The container image (Dockerfile) holds what the roles the chart runs need, from the one
list of Debian packages `make deps` installs too (apt-runtime.txt), and every Python
package of the project. No Docker engine is needed: the Dockerfile, the Makefile and the
machine's own package database are read."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every program the node plugin and the array run (csi_driver/attach.py, csi_driver/mounts.py);
# nbdkit with its nbd plugin (same package) for NBD over TLS.
PROGRAMS = ("nbdfuse", "nbdkit", "fusermount3", "losetup", "mount", "umount", "blkid", "blockdev", "mkfs.ext4",
            "resize2fs", "mkfs.xfs", "xfs_growfs")  # fmt: skip


def runtime_packages() -> list[str]:
    lines = (ROOT / "apt-runtime.txt").read_text().splitlines()
    return [word for line in lines for word in line.split("#")[0].split()]


def test_the_image_and_make_install_the_one_list():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY apt-runtime.txt" in dockerfile and "xargs apt-get install" in dockerfile
    assert re.search(r"^RUNTIME_PACKAGES := \$\(shell sed .* apt-runtime\.txt\)$", (ROOT / "Makefile").read_text(),
                     flags=re.MULTILINE)  # fmt: skip
    assert "$(RUNTIME_PACKAGES)" in (ROOT / "Makefile").read_text()


def test_the_image_holds_every_python_package_of_the_project():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(re.findall(r"^COPY (\w+) \1$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE))
    assert copied == packages


def test_every_program_the_plugin_runs_comes_from_a_listed_package():
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system: dpkg cannot say which package holds a program")
    listed = set(runtime_packages())
    owners = {}
    for program in PROGRAMS:
        path = shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")
        assert path is not None, f"{program} is not installed: make deps installs apt-runtime.txt"
        found = subprocess.run(["dpkg", "-S", str(Path(path).resolve())], capture_output=True, text=True)
        if found.returncode != 0:  # usrmerge: dpkg knows the /sbin or /bin name
            found = subprocess.run(["dpkg", "-S", f"/{Path(path).parent.name}/{program}"], capture_output=True,
                                   text=True)  # fmt: skip
        owners[program] = found.stdout.split(":")[0]
    assert {program: owner for program, owner in owners.items() if owner not in listed} == {}


def test_the_base_is_pinned_by_digest_and_runs_the_tests_python():
    """A rebuild takes the same base; its Python is the one every test runs (3.11)."""
    base = re.search(r"^ARG BASE=(\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert base is not None, "the base is a build argument"
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base.group(1))
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.11"


def constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.+-]*", pin) for pin in pins), pins
    return {name.lower().replace("_", "-"): version for name, version in (pin.split("==") for pin in pins)}


def test_every_dependency_of_the_image_and_of_the_tests_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"], "setuptools"]
    names = {re.split(r"[<>=!~; \[]", requirement)[0].lower().replace("_", "-") for requirement in wanted}
    assert names - constraints().keys() == set()
    # from 36 the client carries a second, asyncio client (68 MB) and aiohttp that nothing imports
    assert int(constraints()["kubernetes"].split(".")[0]) < 36


def test_the_image_and_the_tests_install_from_the_same_constraints():
    dockerfile, makefile = (ROOT / "Dockerfile").read_text(), (ROOT / "Makefile").read_text()
    assert "pip install --no-cache-dir -c constraints.txt" in dockerfile
    assert "pip install -q -c constraints.txt -e '.[dev]'" in makefile
    # the dependencies' layer comes before the source: a source edit does not rebuild it
    assert dockerfile.index("-c constraints.txt") < dockerfile.index("COPY backend backend")


def test_the_build_context_leaves_out_what_the_image_does_not_hold():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "tests", "docs", "bench", "charts"} <= ignored
