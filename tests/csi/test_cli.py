"""`ccopy csi` as kubelet and the sidecars meet it: a unix socket, Probe, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc

from ccopy.launch import _read_line
from ccopy_api import csi_pb2 as csi
from ccopy_api import csi_pb2_grpc as csi_grpc


def test_csi_command_serves_on_a_unix_socket(array_proc, tmp_path: Path):
    socket = tmp_path / "plugin" / "csi.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "ccopy", "csi", "--endpoint", f"unix://{socket}", "--node-id", "n1",
         "--array", array_proc.api_address, "--mode", "controller", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert _read_line(process, 30).startswith("ready endpoint=unix:")
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            identity = csi_grpc.IdentityStub(channel)
            assert identity.GetPluginInfo(csi.GetPluginInfoRequest()).name == "ldev.csi.consistentcopy.io"
            assert identity.Probe(csi.ProbeRequest()).ready.value
            caps = identity.GetPluginCapabilities(csi.GetPluginCapabilitiesRequest()).capabilities
            controller = csi.PluginCapability.Service.CONTROLLER_SERVICE
            assert any(c.service.type == controller for c in caps)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(30) == 0
    assert not socket.exists()  # removed on the way out
