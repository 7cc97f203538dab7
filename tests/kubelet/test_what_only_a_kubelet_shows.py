"""What only a real kubelet shows: the node drained under an application, the controller Pod
deleted, and the kubelet unstaging a volume whose array died. In each, the application's data
is there when it comes back, and nothing of the volume is left on the node."""

from __future__ import annotations

from kubernetes import client

from tests.e2e import chart
from tests.e2e.objects import await_object
from tests.kubelet.app import App, new_app
from tests.kubelet.conftest import kubectl
from tests.kubelet.site import NodeSite


def released(site: NodeSite, app: App, volume: str) -> None:
    """The node gave the volume back: not mounted, no FUSE mount or loop device of the plugin's
    left, and the VolumeAttachment gone (ControllerUnpublish done)."""
    await_object(lambda: site.node.mounts_of(volume), lambda mounts: not mounts, f"{volume} unmounted on the node")
    await_object(lambda: site.plugin_leftovers(volume), lambda left: not left, f"{volume}: FUSE and loop gone")
    await_object(app.attachments, lambda attachments: not attachments, f"{volume} detached")


def test_a_drained_node_gives_the_volume_back_and_the_app_finds_its_data_after(node_site: NodeSite):
    app = new_app(node_site)
    first = app.running_pod()
    assert app.said(first) == f"first={app.namespace} starts=1 fs=ext4"
    volume = app.volume
    kubectl(node_site, "drain", node_site.node.name, "--pod-selector", f"app={app.name}", "--timeout=300s")
    try:
        released(node_site, app, volume)
    finally:
        kubectl(node_site, "uncordon", node_site.node.name)
    second = app.running_pod(other_than=first.metadata.name)
    assert app.said(second) == f"first={app.namespace} starts=2 fs=ext4"
    app.delete()


def test_a_deleted_controller_pod_is_replaced_and_the_new_one_serves(node_site: NodeSite):
    core = client.CoreV1Api(node_site.api)
    selector = "app.kubernetes.io/component=controller"
    (old,) = core.list_namespaced_pod(chart.NAMESPACE, label_selector=selector).items
    core.delete_namespaced_pod(old.metadata.name, chart.NAMESPACE)
    pods = node_site.wait_chart_running(other_than=old.metadata.name)
    (new,) = [pod for pod in pods if pod.metadata.labels.get("app.kubernetes.io/component") == "controller"]
    coordination = client.CoordinationV1Api(node_site.api)
    await_object(lambda: {lease.spec.holder_identity for lease in
                          coordination.list_namespaced_lease(chart.NAMESPACE).items},
                 lambda holders: holders and all(new.metadata.name in (h or "") for h in holders),
                 "every sidecar's lease held by the new controller Pod")  # fmt: skip
    app = new_app(node_site)  # provisioned, attached and later deleted by the new Pod's sidecars
    assert app.said(app.running_pod()) == f"first={app.namespace} starts=1 fs=ext4"
    app.delete()


def test_after_the_array_died_the_kubelet_unstages_and_a_new_pod_finds_the_data(node_site: NodeSite):
    app = new_app(node_site)
    first = app.running_pod()
    assert app.said(first) == f"first={app.namespace} starts=1 fs=ext4"
    volume = app.volume
    apps = client.AppsV1Api(node_site.api)
    node_site.array.kill()
    try:
        apps.patch_namespaced_deployment_scale(app.name, app.namespace, {"spec": {"replicas": 0}})
        # NodeUnpublish and NodeUnstage need no array: the node is clean while it is still down.
        await_object(lambda: node_site.node.mounts_of(volume), lambda mounts: not mounts, f"{volume} unmounted")
        await_object(lambda: node_site.plugin_leftovers(volume), lambda left: not left, f"{volume}: FUSE, loop gone")
    finally:
        node_site.array.start()
    await_object(app.attachments, lambda attachments: not attachments, f"{volume} detached")
    apps.patch_namespaced_deployment_scale(app.name, app.namespace, {"spec": {"replicas": 1}})
    second = app.running_pod(other_than=first.metadata.name)
    assert app.said(second) == f"first={app.namespace} starts=2 fs=ext4"
    app.delete()


def test_the_node_plugin_killed_under_a_running_app_leaves_its_volume_usable(node_site: NodeSite):
    """The kubelet restarts the plugin's container; the volume keeper held the NBD connection,
    so the application goes on writing, and the restarted plugin unstages the volume later."""
    app = new_app(node_site)
    pod = app.running_pod()
    assert app.said(pod) == f"first={app.namespace} starts=1 fs=ext4"
    volume = app.volume
    before = node_site.plugin_restarts()
    node_site.node.kill_container(node_site.plugin_container_id())
    await_object(node_site.plugin_restarts, lambda restarts: restarts > before, "the plugin's container restarted")
    node_site.wait_chart_running()
    written = kubectl(node_site, "exec", "-n", app.namespace, pod.metadata.name, "--", "sh", "-c",
                      "echo after > /data/after && sync && cat /data/first /data/after")  # fmt: skip
    assert written.split() == [app.namespace, "after"]
    apps = client.AppsV1Api(node_site.api)
    apps.patch_namespaced_deployment_scale(app.name, app.namespace, {"spec": {"replicas": 0}})
    released(node_site, app, volume)  # by the restarted plugin
    apps.patch_namespaced_deployment_scale(app.name, app.namespace, {"spec": {"replicas": 1}})
    assert app.said(app.running_pod(other_than=pod.metadata.name)) == f"first={app.namespace} starts=2 fs=ext4"
    app.delete()
