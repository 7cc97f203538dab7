"""The Helm chart (charts/consistent-copy), rendered by the real helm: it lints strictly,
renders the classes the docs' manifests hold, leaves out what is disabled, gives each
component the RBAC the e2e harness proves (and only at its site), and its values
schema turns a typo or a wrong value into a clear error before anything is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.chart.helm import ARRAY, CHART, helm, rendered
from tests.e2e import rbac

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SIDECARS = {"csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "csi-addons-sidecar"}
CLASS_KINDS = {"StorageClass", "VolumeSnapshotClass", "VolumeGroupSnapshotClass", "VolumeReplicationClass",
               "VolumeGroupReplicationClass", "Secret"}  # fmt: skip


def without_labels(doc: dict) -> dict:
    return {**doc, "metadata": {k: v for k, v in doc["metadata"].items() if k != "labels"}}


def test_the_chart_lints_strictly():
    done = helm("lint", "--strict", str(CHART), "--set", ARRAY)
    assert done.returncode == 0, done.stdout + done.stderr


def test_by_default_it_renders_the_classes_the_docs_manifests_hold():
    examples = [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    expected = {(d["kind"], d["metadata"]["name"]): d for d in examples if d["kind"] != "Namespace"}
    got = {(d["kind"], d["metadata"]["name"]): without_labels(d) for d in rendered() if d["kind"] in CLASS_KINDS}
    assert got == expected
    assert all(d["metadata"]["labels"]["consistentcopy.io/site"] == "main" for d in rendered())


def test_what_is_disabled_is_left_out_and_a_default_class_is_marked():
    off = rendered("classes.replication.enabled=false", "classes.volumeSnapshotClass.enabled=false")
    kinds = {d["kind"] for d in off} & CLASS_KINDS
    assert kinds == {"StorageClass", "VolumeGroupSnapshotClass"}
    (storage,) = [d for d in rendered("classes.storageClass.default=true") if d["kind"] == "StorageClass"]
    assert storage["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("site=middle", "at '/site': value must be one of 'main', 'backup'"),
        ("sight=backup", "additional properties 'sight' not allowed"),
        ("classes.replication.mode=later", "at '/classes/replication/mode': value must be one of 'async', 'sync'"),
        ("classes.replication.journalCapacity=lots", "at '/classes/replication/journalCapacity'"),
        ("classes.storageClass.name=Not_A_Name", "at '/classes/storageClass/name'"),
        ("classes.replication.rpoSeconds=0", "at '/classes/replication/rpoSeconds'"),
        ("array.address=nohost", "at '/array/address': 'nohost' does not match pattern"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy': value must be one of 'IfNotPresent'"),
        ("sidecars.provisioner=registry.k8s.io/sig-storage/csi-provisioner",
         "at '/sidecars/provisioner': 'registry.k8s.io/sig-storage/csi-provisioner' does not match"),  # no tag
        ("node.kubeletDir=var/lib/kubelet", "at '/node/kubeletDir'"),
        ("logLevel=LOUD", "at '/logLevel': value must be one of 'DEBUG', 'INFO', 'WARNING', 'ERROR'"),
    ],
)
def test_a_bad_value_is_refused_by_the_schema_with_where_and_why(value, message):
    done = helm("template", "r", str(CHART), "--set", ARRAY, "--set", value)
    assert done.returncode != 0 and message in done.stderr, done.stderr


@pytest.mark.parametrize(("site", "ours", "not_here"), [("main", "namespace-operator", "backup-site"),
                                                       ("backup", "backup-site", "namespace-operator")])  # fmt: skip
def test_each_component_gets_exactly_the_rules_the_harness_proves_and_only_at_its_site(site, ours, not_here):
    docs = rendered(f"site={site}", "controller.csiAddonsAuth=false")  # as the harness runs the manager
    roles = {d["metadata"]["name"].removeprefix("r-"): d for d in docs if d["kind"] == "ClusterRole"}
    assert set(roles) == {*SIDECARS, ours}
    for name, role in roles.items():
        got = [(group, tuple(r["resources"]), tuple(r["verbs"])) for r in role["rules"] for group in r["apiGroups"]]
        assert got + ([rbac.LEASES] if f"r-{name}-leases" in names(docs, "Role") else []) == rbac.RULES[name]
    accounts = names(docs, "ServiceAccount")
    assert accounts == {"r-controller", "r-node", f"r-{ours}"} and f"r-{not_here}" not in accounts
    for binding in (d for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        (subject,) = binding["subjects"]
        assert subject["name"] in accounts and subject["namespace"] == "ccopy-system"
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]
    leases = [d for d in docs if d["kind"] == "Role"]
    assert {d["metadata"]["name"] for d in leases} == {f"r-{s}-leases" for s in SIDECARS}
    assert all(d["metadata"]["namespace"] == "ccopy-system" for d in leases)


def names(docs: list[dict], kind: str) -> set[str]:
    return {d["metadata"]["name"] for d in docs if d["kind"] == kind}


def test_with_csi_addons_auth_on_the_controller_may_review_tokens_and_nothing_more():
    """The csi-addons sidecar's default: it checks the manager's token with a TokenReview."""
    docs = rendered()
    auth = [d for d in docs if d["metadata"]["name"] == "r-csi-addons-auth"]
    assert {d["kind"] for d in auth} == {"ClusterRole", "ClusterRoleBinding"}
    role, binding = sorted(auth, key=lambda d: d["kind"])
    assert role["rules"] == [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
                              "verbs": ["create"]}]  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-controller", "namespace": "ccopy-system"}]
    assert not [d for d in rendered("controller.csiAddonsAuth=false") if "auth" in d["metadata"]["name"]]


def test_without_an_array_the_chart_says_which_value_to_set():
    done = helm("template", "r", str(CHART))
    assert done.returncode != 0
    assert "array.address is required: the HOST:PORT of the site's array management API" in done.stderr


def test_a_class_whose_api_the_cluster_lacks_is_left_out_so_the_release_still_installs():
    """An API server refuses a whole release naming a kind it does not serve; NOTES.txt then
    says which prerequisite is MISSING, and `helm upgrade` adds the class once it is there."""
    bare = {d["kind"] for d in rendered(api_versions=())}
    assert bare & CLASS_KINDS == {"StorageClass"}
    only_snapshots = {d["kind"] for d in rendered(api_versions=("snapshot.storage.k8s.io/v1/VolumeSnapshotClass",))}
    assert only_snapshots & CLASS_KINDS == {"StorageClass", "VolumeSnapshotClass"}


def test_an_array_in_the_cluster_and_an_address_elsewhere_are_refused_together():
    done = helm("template", "r", str(CHART), "--set", ARRAY, "--set", "array.inCluster.enabled=true")
    assert done.returncode != 0
    assert "array.address=array.example.com:50051 and array.inCluster.enabled=true: choose one" in done.stderr


# The containers that are not the image's unprivileged user, and why: the node plugin attaches and
# mounts, the volume keeper makes FUSE mounts (privileged); node-driver-registrar writes its socket
# into the kubelet's plugin registry, a folder the kubelet makes root's with mode 0750 (seen on a
# real node, tests/kubelet).
NOT_UNPRIVILEGED = {("node", "ccopy-csi"): "privileged", ("node", "node-driver-registrar"): "root",
                    ("volume-keeper", "volume-keeper"): "privileged"}  # fmt: skip


@pytest.mark.parametrize("site", ["main", "backup"])
def test_every_container_runs_unprivileged_but_the_node_plugin_and_the_registrar(site):
    docs = rendered(f"site={site}", "array.inCluster.enabled=true", "array.address=")
    seen = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "DaemonSet", "StatefulSet"):
            continue
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        for spec in doc["spec"]["template"]["spec"]["containers"]:
            context = spec.get("securityContext", {})
            if context.get("privileged"):
                seen[(component, spec["name"])] = "privileged"
            elif context.get("runAsUser") == 0:
                assert context["capabilities"] == {"drop": ["ALL"]} and context["readOnlyRootFilesystem"], spec
                assert context["allowPrivilegeEscalation"] is False, spec["name"]
                seen[(component, spec["name"])] = "root"
            else:
                assert context.get("runAsNonRoot") and context.get("runAsUser") == 65532, (component, spec["name"])
                assert context["capabilities"] == {"drop": ["ALL"]} and context["readOnlyRootFilesystem"], spec
    assert seen == NOT_UNPRIVILEGED
