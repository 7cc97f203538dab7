"""Every object the chart renders, for each kind of install a user makes (main site, backup
site, an array in the cluster, everything over TLS), is one the API server of the version
we test on accepts: built-in kinds against Kubernetes' own schemas (kubernetes-validate,
strict: an unknown field is an error, as `kubectl apply --validate=strict` makes it), the
classes against the upstream CRDs the e2e harness installs. And the Pods run what the flows
need: the flags each sidecar must have, the images the docs name."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.helm import CHART, NAMESPACE, PREREQUISITES, container, one, rendered
from tests.e2e.control_plane import K8S_CRDS

KUBERNETES = "1.36.0"  # the kube-apiserver of ../shared/k8s
VALUE_FILES = ["main.yaml", "backup.yaml", "in-cluster-array.yaml", "tls.yaml"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
SERVICE_MONITOR = "monitoring.coreos.com/v1/ServiceMonitor"


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the CRD's schema of that version, made strict as the API server
    prunes: an object with properties accepts no others unless it says it keeps them."""
    schemas = {}
    for path in sorted(K8S_CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api, crd["spec"]["names"]["kind"])] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def strict(schema: dict) -> dict:
    schema = {key: strict(value) if isinstance(value, dict) else value for key, value in schema.items()}
    if "properties" in schema:
        schema["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    return schema


def problems(doc: dict, crds: dict[tuple[str, str], dict]) -> list[str]:
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    key = (doc["apiVersion"], doc["kind"])
    try:
        if key in crds:
            jsonschema.validate(doc, crds[key])
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except jsonschema.ValidationError as exc:
        return [f"{where} at {'/'.join(map(str, exc.absolute_path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no schema for {key} in Kubernetes {KUBERNETES} nor in the CRDs under {K8S_CRDS}"]
    return []


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], dict]:
    if not any(K8S_CRDS.glob("*.yaml")):
        pytest.skip(f"the upstream CRDs are not under {K8S_CRDS}: run ../shared/k8s/install.sh (make test does)")
    return crd_schemas()


@pytest.mark.parametrize("values", ["", *VALUE_FILES])
def test_every_object_is_one_the_api_server_accepts(values, crds):
    docs = rendered(values=values)
    assert {d["kind"] for d in docs} >= {"Deployment", "DaemonSet", "CSIDriver", "ClusterRole", "StorageClass"}
    assert [p for doc in docs for p in problems(doc, crds)] == []


def test_the_validation_finds_a_wrong_field_in_a_built_in_kind_and_in_a_class(crds):
    """The control: the same check rejects what the API server would."""
    docs = rendered()
    deployment = one(docs, "Deployment", "r-controller")
    deployment["spec"]["template"]["spec"]["containers"][0]["argz"] = []
    (problem,) = problems(deployment, crds)
    assert "'argz' was unexpected" in problem, problem
    snapshot_class = one(docs, "VolumeSnapshotClass", "ccopy")
    assert problems({**snapshot_class, "deletionPolicy": "Keep"}, crds)
    assert problems({**snapshot_class, "drivr": "x"}, crds)


def test_the_array_runs_in_the_cluster_only_when_asked_and_every_process_dials_it():
    assert not [d for d in rendered() if d["kind"] in ("StatefulSet", "PodDisruptionBudget")]
    docs = rendered(values="in-cluster-array.yaml")
    array = one(docs, "StatefulSet", "r-array")
    args = array["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--serial=32001", "--insecure", "--remote=ccopy-array.backup.example.com:50051"} <= set(args)
    assert array["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert one(docs, "PodDisruptionBudget", "r-array")["spec"]["maxUnavailable"] == 0
    for kind, name, name_of in [("Deployment", "r-controller", "ccopy-csi"), ("DaemonSet", "r-node", "ccopy-csi"),
                                ("Deployment", "r-namespace-operator", "namespace-operator")]:  # fmt: skip
        env = {e["name"]: e.get("value") for e in container(docs, kind, name, name_of)["env"]}
        assert env["CCOPY_ARRAY"] == "r-array.ccopy-system.svc:50051"


def test_with_tls_every_process_holds_its_certificates_and_the_array_requires_them():
    docs = rendered(values="tls.yaml")
    args = one(docs, "StatefulSet", "r-array")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--insecure" not in args and "--tls-client-ca=/etc/ccopy/tls/ca.crt" in args
    assert "--remote-cert=/etc/ccopy/remote/tls.crt" in args
    node = container(docs, "DaemonSet", "r-node", "ccopy-csi")
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["CCOPY_NBD_CERT"] == "/etc/ccopy/nbd/tls.crt" and env["CCOPY_CERT"] == "/etc/ccopy/array/tls.crt"
    assert {m["mountPath"] for m in node["volumeMounts"]} >= {"/etc/ccopy/nbd", "/etc/ccopy/array"}
    operator = container(docs, "Deployment", "r-namespace-operator", "namespace-operator")
    assert {m["mountPath"] for m in operator["volumeMounts"]} == {"/etc/ccopy/array"}


def test_each_sidecar_has_the_flags_the_flows_need():
    docs = rendered()
    args = {c["name"]: c.get("args", []) for c in
            one(docs, "Deployment", "r-controller")["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert "--extra-create-metadata" in args["csi-provisioner"]  # PVC names reach the array's LDEV labels
    assert "--feature-gates=CSIVolumeGroupSnapshot=true" in args["csi-snapshotter"]  # off in released v8.6.0
    for sidecar in ("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter"):
        assert "--leader-election" in args[sidecar] and "--csi-address=/csi/csi.sock" in args[sidecar]
    assert "--csi-addons-address=/csi/csi-addons.sock" in args["csi-addons"]
    assert {"--pod=$(POD_NAME)", "--namespace=$(POD_NAMESPACE)", "--pod-uid=$(POD_UID)"} <= set(args["csi-addons"])
    assert "--controller-ip" not in " ".join(args["csi-addons"])  # the manager rejects an IP endpoint
    ports = [p["containerPort"] for c in one(docs, "Deployment", "r-controller")["spec"]["template"]["spec"]
             ["containers"] for p in c.get("ports", [])]  # fmt: skip
    assert len(ports) == len(set(ports)), "two containers of one Pod on one port"
    registrar = container(docs, "DaemonSet", "r-node", "node-driver-registrar")
    path = "--kubelet-registration-path=/var/lib/kubelet/plugins/ldev.csi.consistentcopy.io/csi.sock"
    assert path in registrar["args"]


def test_a_service_monitor_only_where_the_cluster_has_its_kind():
    assert not [d for d in rendered() if d["kind"] == "ServiceMonitor"]
    monitors = [d for d in rendered(values="in-cluster-array.yaml",
                                    api_versions=("monitoring.coreos.com/v1/ServiceMonitor",))
                if d["kind"] == "ServiceMonitor"]  # fmt: skip
    assert {m["metadata"]["name"] for m in monitors} == {"r-replication-metrics", "r-array-metrics"}


def test_the_images_are_the_ones_the_docs_list():
    """docs/kubernetes.md's table of images is what the chart runs, tag for tag."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert dict(table) == values["sidecars"]


LONGEST_RELEASE = "a-release-whose-name-is-as-long-as-helm-lets-it-be-53"  # helm refuses 54 and more
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # a Service's name
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# A StatefulSet labels its Pods controller-revision-hash=<its name>-<hash of up to 10>, a label
# value of at most 63: a longer name makes a StatefulSet whose Pods are never created.
STATEFUL_SET_NAME_MAX = 52


def name_problems(doc: dict) -> list[str]:
    """What the API server (or, for a StatefulSet, its controller) refuses in an object's name."""
    kind, name = doc["kind"], doc["metadata"]["name"]
    found = [f"{kind}/{name}: {len(name)} characters, more than 63"] if len(name) > 63 else []
    if kind == "Service" and not DNS_1035_LABEL.fullmatch(name):
        found.append(f"Service/{name}: not a DNS-1035 label")
    if not DNS_1123_SUBDOMAIN.fullmatch(name):
        found.append(f"{kind}/{name}: not a DNS-1123 subdomain")
    if kind == "StatefulSet" and len(name) > STATEFUL_SET_NAME_MAX:
        found.append(f"StatefulSet/{name}: {len(name)} characters, its Pods' revision label would pass 63")
    return found


def references(doc: dict) -> list[tuple[str, str]]:
    """(kind, name) of every object of the release this one names."""
    spec = doc.get("spec", {})
    named = [("Service", spec["serviceName"])] if doc["kind"] == "StatefulSet" else []
    if "roleRef" in doc:
        named.append((doc["roleRef"]["kind"], doc["roleRef"]["name"]))
        named += [(s["kind"], s["name"]) for s in doc["subjects"] if s["kind"] == "ServiceAccount"]
    pod = spec.get("template", {}).get("spec", {})
    if "serviceAccountName" in pod:
        named.append(("ServiceAccount", pod["serviceAccountName"]))
    for env in (e for c in pod.get("containers", []) for e in c.get("env", []) if e["name"] == "CCOPY_ARRAY"):
        if match := re.match(rf"([^.]+)\.{NAMESPACE}\.svc:", env["value"]):  # the in-cluster array's Service
            named.append(("Service", match[1]))
    return named


# Every optional part on between them: each site's controller, the array in the cluster with
# its metrics Service and ServiceMonitor, TLS, csi-addons auth (on by default).
EVERYTHING_ON = [
    ("in-cluster-array.yaml", ()),
    ("tls.yaml", ()),
    ("backup.yaml", ("array.inCluster.enabled=true", "array.address=")),
]


@pytest.mark.parametrize(("values", "sets"), EVERYTHING_ON)
def test_a_release_name_of_53_characters_makes_names_the_api_server_accepts(values, sets):
    """Every name fits, the names the chart cuts stay apart, and what one object names (a
    Service, an account, a role) is still there under its cut name."""
    docs = rendered(*sets, values=values, release=LONGEST_RELEASE, api_versions=(*PREREQUISITES, SERVICE_MONITOR))
    assert {"StatefulSet", "ServiceMonitor", "ClusterRoleBinding", "RoleBinding"} <= {d["kind"] for d in docs}
    assert [p for doc in docs for p in name_problems(doc)] == []
    objects = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(objects) == len(set(objects)), "two objects of one kind cut to one name"
    assert [(d["kind"], ref) for d in docs for ref in references(d) if ref not in objects] == []
