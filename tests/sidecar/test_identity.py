"""csi-addons Identity as the csi-addons sidecar uses it: the driver's name, the
capabilities it checks, and a Probe that says "not ready" (never an error) while
the array does not answer."""

from __future__ import annotations

import subprocess
import sys

import grpc

from ccopy.launch import _read_line
from ccopy_api.csiaddons import identity_pb2 as identity
from ccopy_api.csiaddons import identity_pb2_grpc as identity_grpc
from ccopy_common import DEFAULT_DRIVER_NAME
from tests.conftest import wait_for
from tests.sidecar.conftest import sidecar_for

Capability = identity.Capability


def test_identity_is_the_csi_driver_name(sidecar):
    answer = sidecar.identity.GetIdentity(identity.GetIdentityRequest())
    assert answer.name == DEFAULT_DRIVER_NAME and answer.vendor_version


def test_capabilities_are_what_the_manager_checks(sidecar):
    capabilities = sidecar.identity.GetCapabilities(identity.GetCapabilitiesRequest()).capabilities
    services = {c.service.type for c in capabilities if c.HasField("service")}
    replication = {c.volume_replication.type for c in capabilities if c.HasField("volume_replication")}
    groups = {c.volume_group.type for c in capabilities if c.HasField("volume_group")}
    assert services == {Capability.Service.CONTROLLER_SERVICE}  # else no leader, no call reaches us
    assert replication == {
        Capability.VolumeReplication.VOLUME_REPLICATION,
        Capability.VolumeReplication.GET_REPLICATION_DESTINATION_INFO,
    }
    assert Capability.VolumeGroup.VOLUME_GROUP in groups
    assert Capability.VolumeGroup.LIMIT_VOLUME_TO_ONE_VOLUME_GROUP in groups


def test_probe_is_ready_while_the_array_answers_and_not_ready_once_it_is_gone(sidecar, array_proc):
    assert sidecar.identity.Probe(identity.ProbeRequest()).ready.value
    array_proc.stop()
    answer = sidecar.identity.Probe(identity.ProbeRequest())  # no error: the csi-addons sidecar would exit
    assert answer.HasField("ready") and not answer.ready.value
    array_proc.start()  # the sidecar asks again every second until ready; so do we
    assert wait_for(lambda: sidecar.identity.Probe(identity.ProbeRequest()).ready.value)


def test_ccopy_replication_serves_on_a_unix_socket_and_removes_it_on_sigterm(array_proc, tmp_path):
    socket = tmp_path / "csi" / "csi-addons.sock"
    argv = [sys.executable, "-m", "ccopy", "replication", "--endpoint", f"unix://{socket}"]
    process = subprocess.Popen([*argv, "--array", array_proc.api_address], stdout=subprocess.PIPE, text=True)
    try:
        assert _read_line(process, 120) == f"ready endpoint=unix:{socket}"
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            stub = identity_grpc.IdentityStub(channel)
            assert stub.Probe(identity.ProbeRequest()).ready.value
        process.terminate()
        assert process.wait(60) == 0
        assert not socket.exists()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_two_sidecars_each_see_their_own_array(array_proc, tmp_path):
    running, channel = sidecar_for(array_proc.api_address, tmp_path / "a.sock")
    with channel:
        assert identity_grpc.IdentityStub(channel).GetIdentity(identity.GetIdentityRequest()).manifest["array"] == (
            array_proc.api_address
        )
    running.stop()


def test_the_sidecar_serves_its_call_counts_and_latencies(array_proc, tmp_path):
    from replication_sidecar.config import ReplicationConfig
    from replication_sidecar.server import create_server
    from tests.replication.test_metrics import scrape, value

    config = ReplicationConfig(
        endpoint=f"unix://{tmp_path / 'm.sock'}", array=array_proc.api_address, metrics="127.0.0.1:0"
    )
    running = create_server(config)
    try:
        with grpc.insecure_channel(running.address) as channel:
            stub = identity_grpc.IdentityStub(channel)
            for _ in range(3):
                stub.Probe(identity.ProbeRequest())
        samples = scrape(running.metrics_address)
        assert value(samples, "ccopy_rpc_calls_total", server="replication", method="Probe", code="OK") == 3
        assert value(samples, "ccopy_rpc_call_seconds_count", server="replication", method="Probe") == 3
    finally:
        running.stop()
