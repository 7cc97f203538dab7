"""csi-sanity, the CSI conformance suite (kubernetes-csi/csi-test), against `ccopy csi`
and a real array, in mount and block modes, every capability on (attach limit too).

The binary comes from ../shared/k8s/install.sh (`make test` runs it when that folder
exists): ~/.cache/ccopy-k8s/bin, or CCOPY_K8S_BIN. Elsewhere this test skips, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ccopy.launch import ArrayProcessHandle, _read_line
from tests.conftest import require_root, require_tools

K8S_BIN = Path(os.environ.get("CCOPY_K8S_BIN", Path.home() / ".cache" / "ccopy-k8s" / "bin"))
SANITY = K8S_BIN / "csi-sanity"
MIB = 1 << 20


@pytest.fixture
def plugin_socket(tmp_path: Path):
    """The array and the CSI plugin (controller and node, attach limit 100) on a unix socket."""
    require_root()
    require_tools("nbdfuse", "losetup", "mkfs.ext4", "fusermount3")
    if not SANITY.exists():
        pytest.skip(f"csi-sanity not found at {SANITY}: run ../shared/k8s/install.sh or set CCOPY_K8S_BIN")
    array = ArrayProcessHandle(pool=tmp_path / "pool", serial=555, log_path=tmp_path / "array.log").start()
    socket = tmp_path / "csi.sock"
    argv = [sys.executable, "-m", "ccopy", "csi", "--endpoint", f"unix://{socket}", "--node-id", "sanity-node",
            "--array", array.api_address, "--state-dir", str(tmp_path / "state"), "--max-volumes", "100"]  # fmt: skip
    with open(tmp_path / "csi.log", "w") as log:
        plugin = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert _read_line(plugin, 120).startswith("ready "), (tmp_path / "csi.log").read_text()[-2000:]
        yield socket
    finally:
        plugin.terminate()
        plugin.wait(60)
        array.stop()


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("access", ["mount", "block"])
def test_csi_sanity_passes_every_spec(plugin_socket, tmp_path, access):
    mutable = tmp_path / "mutable.yaml"  # ControllerModifyVolume with parameters the plugin really acts on
    mutable.write_text("maxIOPS: '500'\nmaxMBps: '40'\n")
    argv = [
        str(SANITY), f"--csi.endpoint={plugin_socket}", f"--csi.mountdir={tmp_path / 'mnt'}",
        f"--csi.stagingdir={tmp_path / 'stage'}", f"--csi.testvolumeaccesstype={access}",
        f"--csi.testvolumesize={64 * MIB}", f"--csi.testvolumeexpandsize={128 * MIB}",
        "--csi.testnodevolumeattachlimit", f"--csi.testvolumemutableparameters={mutable}", "--ginkgo.no-color",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1100)
    ran = re.search(r"Ran (\d+) of (\d+) Specs", result.stdout)
    summary = re.search(r"(\d+) Passed \| (\d+) Failed \| (\d+) Pending \| (\d+) Skipped", result.stdout)
    failures = re.findall(r"\[FAIL\].*", result.stdout)
    assert ran is not None and summary is not None, result.stdout[-3000:] + result.stderr[-2000:]
    passed, failed, pending, skipped = (int(summary.group(i)) for i in range(1, 5))
    print(f"csi-sanity {access}: ran {ran.group(1)} of {ran.group(2)}: {passed} passed, {failed} failed, "
          f"{skipped} skipped")  # fmt: skip
    assert failed == 0 and result.returncode == 0, "\n".join(failures) or result.stdout[-3000:]
    # Every spec runs and passes, but the one csi-test marks pending in its own source (ListVolumes
    # pagination with a volume deleted between pages), which no driver runs.
    assert skipped == 0 and pending <= 1 and passed == int(ran.group(1)) == int(ran.group(2)) - pending
    left = [line for line in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in line]
    assert not left, f"left mounted after csi-sanity: {left}"
