"""The node plugin runs as root; node-driver-registrar and livenessprobe run as the chart's
unprivileged user (65532) and must be able to connect to its socket.

The real livenessprobe (kubernetes-csi, from ../shared/k8s), run as that user, probes a node
plugin started as the chart starts it (`--socket-group`): healthy. The control, the same
plugin without the flag, leaves the socket to root alone: that user is refused, as the
sidecars were in a container (`connect ... permission denied`; the failing liveness check
then had the kubelet restart the plugin, and the driver was never registered).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ccopy.launch import free_port
from ccopy.waiting import wait_progressing
from tests.conftest import require_root, require_tools
from tests.e2e.control_plane import K8S_BIN

NONROOT = 65532  # the chart's consistent-copy.nonrootId


def healthz(address: str) -> int | str:
    """The probe's answer: its HTTP status, or why there was none yet."""
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:
        return str(exc)


@pytest.fixture
def folder():
    """A folder every user may traverse (pytest's tmp_path is root's alone), as /csi is."""
    path = Path(tempfile.mkdtemp(prefix="ccopy-socket-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def connect_as_nonroot(socket: Path) -> str:
    """What connecting to the socket as the unprivileged user gives: "ok" or the error."""
    code = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1]); print('ok')\nexcept OSError as e:\n    print(e.strerror)")  # fmt: skip
    argv = ["setpriv", f"--reuid={NONROOT}", f"--regid={NONROOT}", "--clear-groups", "/usr/bin/python3", "-c", code]
    return subprocess.run([*argv, str(socket)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def node_plugin(array_proc, folder, request):
    """`ccopy csi --mode node` as root, with --socket-group when the test's parameter gives one."""
    socket = folder / "csi.sock"
    argv = [sys.executable, "-m", "ccopy", "csi", "--mode", "node", "--node-id", "node-1", "--endpoint",
            f"unix://{socket}", "--array", array_proc.api_address, "--state-dir", str(folder / "state")]  # fmt: skip
    group = request.param
    plugin = subprocess.Popen([*argv, *(["--socket-group", str(group)] if group is not None else [])])
    try:
        wait_progressing(lambda: socket.is_socket() or plugin.poll() is not None, bool, "the plugin's socket")
        assert plugin.poll() is None
        yield socket
    finally:
        plugin.terminate()
        plugin.wait(30)


@pytest.fixture(autouse=True)
def tools():
    require_root()
    require_tools("setpriv", "python3")


@pytest.mark.parametrize("node_plugin", [NONROOT], indirect=True)
def test_livenessprobe_as_the_unprivileged_user_reaches_a_root_node_plugin(node_plugin):
    probe_binary = K8S_BIN / "livenessprobe"
    if not probe_binary.exists():
        pytest.skip(f"livenessprobe not found under {K8S_BIN}: run ../shared/k8s/install.sh (make test does)")
    assert connect_as_nonroot(node_plugin) == "ok"
    assert node_plugin.stat().st_mode & 0o777 == 0o660 and node_plugin.stat().st_gid == NONROOT
    address = f"127.0.0.1:{free_port()}"
    as_nonroot = ["setpriv", f"--reuid={NONROOT}", f"--regid={NONROOT}", "--clear-groups"]
    probe = subprocess.Popen([*as_nonroot, str(probe_binary), f"--csi-address={node_plugin}",
                              f"--http-endpoint={address}"], stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        status = wait_progressing(lambda: healthz(address), lambda s: s == 200, "livenessprobe healthy")
        assert status == 200
    finally:
        probe.terminate()
        probe.wait(30)


@pytest.mark.parametrize("node_plugin", [None], indirect=True)
def test_control_without_the_group_the_unprivileged_user_is_refused(node_plugin):
    """What the chart's sidecars met in a container (livenessprobe then never serves /healthz)."""
    assert connect_as_nonroot(node_plugin) == "Permission denied"
