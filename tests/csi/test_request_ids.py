"""A request's id crosses processes: what the CO (or `ccopy ctl`) sends the plugin or the
array in `x-request-id` is on the array's log lines for that request, streaming calls too."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from ccopy_api import csi_pb2 as csi
from ccopy_common.request_ids import METADATA_KEY
from tests.csi.conftest import GIB, mount_cap


def array_lines(array_proc, request_id: str) -> list[str]:
    return [line for line in array_proc.log_path.read_text().splitlines() if f"request={request_id}" in line]


def test_the_array_logs_the_id_the_plugin_was_sent(plugin, array_proc):
    request_id = uuid.uuid4().hex[:12]
    request = csi.CreateVolumeRequest(name="pvc-ids", capacity_range=csi.CapacityRange(required_bytes=GIB),
                                      volume_capabilities=[mount_cap()])  # fmt: skip
    plugin.controller.CreateVolume(request, metadata=[(METADATA_KEY, request_id)])
    lines = array_lines(array_proc, request_id)
    assert any("event=ldev_created" in line and "name=pvc-ids" in line for line in lines), lines
    assert all(f"request={request_id}" in line for line in lines if "name=pvc-ids" in line)


def test_a_streaming_call_carries_its_id_to_the_array(plugin, array_proc):
    request_id = uuid.uuid4().hex[:12]
    unknown = f"ccs1-{array_proc.serial}-999"  # ours, and no such snapshot: the array is asked, says NOT_FOUND
    stream = plugin.metadata.GetMetadataAllocated(
        csi.GetMetadataAllocatedRequest(snapshot_id=unknown), metadata=[(METADATA_KEY, request_id)]
    )
    try:
        list(stream)
    except Exception as exc:  # grpc.RpcError: NOT_FOUND
        assert "999" in str(exc)
    lines = array_lines(array_proc, request_id)
    assert any("server=array" in line and "code=NOT_FOUND" in line for line in lines), lines


def test_every_line_of_a_ctl_verb_carries_one_id(array_proc):
    env = {**os.environ, "CCOPY_LOG_LEVEL": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-m", "ccopy", "ctl", "--array", array_proc.api_address, "ldev", "create", "by-ctl",
         "--size", "1MiB"], capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = [line for line in array_proc.log_path.read_text().splitlines() if "name=by-ctl" in line]
    assert len(created) == 1 and " request=" in created[0], created
    request_id = created[0].rsplit(" request=", 1)[1]
    assert len(request_id) == 12 and request_id != "None"


def test_calls_without_an_id_get_one_each(array_proc, stub):
    from ccopy_api import array_pb2 as pb

    for name in ("no-id-1", "no-id-2"):
        stub.CreateLdev(pb.CreateLdevRequest(name=name, size_bytes=1 << 20))  # a plain channel: no id sent
    ids = {line.rsplit(" request=", 1)[1] for line in array_proc.log_path.read_text().splitlines()
           if "event=ldev_created" in line and "name=no-id-" in line}  # fmt: skip
    assert len(ids) == 2
