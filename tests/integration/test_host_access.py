"""Host access is deny-by-default, proved with clients nobody here wrote.

An LDEV is reachable over NBD only by the hosts it is published to: a host shows
its TLS client certificate (its common name is the host) and opens the LDEV by
name; without client certificates, through a publication's secret export name.
Everyone else gets the protocol's refusal (NBD_REP_ERR_POLICY) and sees nothing
of the LDEV in NBD_OPT_LIST.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ccopy_api import array_pb2 as pb
from csi_driver.attach import nbd_uri
from tests.conftest import require_tools
from tests.integration.clients import qemu_io
from tests.integration.nbd_raw import RawClient
from tests.integration.tls_array import MIB, TlsArray, run

ERR_POLICY = (1 << 31) + 2
ERR_UNKNOWN = (1 << 31) + 6
SIZE = str(64 * MIB)


def refused(result: subprocess.CompletedProcess[str]) -> bool:
    """The client gave up without learning the export's size. (libnbd 1.14 words every
    NBD_OPT_GO error alike; the raw test below checks the code, and `reason` the words.)"""
    return result.returncode != 0 and SIZE not in result.stdout


def reason(uri: str) -> str:
    """The array's refusal message as libnbd received it (shown in its debug output)."""
    debug = subprocess.run(
        ["nbdinfo", uri], capture_output=True, text=True, timeout=60, env={**os.environ, "LIBNBD_DEBUG": "1"}
    )
    return "".join(line for line in debug.stderr.splitlines() if "server error message" in line)


def test_a_certificate_opens_what_is_published_to_its_host_and_nothing_else(tls_array: TlsArray, tmp_path):
    assert run("nbdinfo", tls_array.uri("vol", tls_array.good)).returncode == 0
    stranger = run("nbdinfo", tls_array.uri("vol", tls_array.stranger))  # our CA, but node-3
    assert refused(stranger), stranger.stderr
    assert "is not published to host 'node-3'" in reason(tls_array.uri("vol", tls_array.stranger))
    host, port = tls_array.array.nbd_address.rsplit(":", 1)
    creds = f"tls-creds-x509,id=tls0,dir={tls_array.stranger},endpoint=client"
    image = f"driver=nbd,host={host},port={port},export=vol,tls-creds=tls0"
    qemu = run("qemu-img", "info", "--object", creds, "--image-opts", image)
    assert qemu.returncode != 0 and "64 MiB" not in qemu.stdout
    listed = run("nbdinfo", "--list", "--json", tls_array.uri("", tls_array.good))
    assert [e["export-name"] for e in json.loads(listed.stdout)["exports"]] == ["vol"]
    hidden = run("nbdinfo", "--list", "--json", tls_array.uri("", tls_array.stranger))
    assert json.loads(hidden.stdout)["exports"] == []  # others' LDEVs are not even listed
    log = (tmp_path / "array.log").read_text()
    assert "nbd_refused" in log and "host=node-3" in log


def test_publications_carry_no_secret_once_hosts_show_certificates(tls_array: TlsArray):
    with tls_array.stub() as stub:
        assert stub.GetArrayInfo(pb.GetArrayInfoRequest()).nbd_hosts_by_certificate
        ldev = stub.CreateLdev(pb.CreateLdevRequest(name="pvc-7", size_bytes=8 * MIB))
        publication = stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-1"))
        assert publication.export_name == "pvc-7"  # what lands in a VolumeAttachment is no password
        listed = stub.ListPublications(pb.ListPublicationsRequest(ldev_id=ldev.id)).publications
        assert [p.export_name for p in listed] == ["pvc-7"]
        assert run("nbdinfo", tls_array.uri("pvc-7", tls_array.good)).returncode == 0


def test_unpublishing_shuts_the_host_out_and_snapshots_follow_their_ldev(tls_array: TlsArray):
    with tls_array.stub() as stub:
        vol = stub.GetLdev(pb.GetLdevRequest(name="vol"))
        stub.CreateSnapshot(pb.CreateSnapshotRequest(name="before", ldev_id=vol.id))
        assert run("nbdinfo", tls_array.uri("snapshots/before", tls_array.good)).returncode == 0
        assert refused(run("nbdinfo", tls_array.uri("snapshots/before", tls_array.stranger)))
        stub.UnpublishLdev(pb.UnpublishLdevRequest(ldev_id=vol.id, host_id="node-1"))
        assert refused(run("nbdinfo", tls_array.uri("vol", tls_array.good)))
        assert refused(run("nbdinfo", tls_array.uri("snapshots/before", tls_array.good)))
        stub.PublishLdev(pb.PublishLdevRequest(ldev_id=vol.id, host_id="node-3", read_only=True))
        readonly = run("nbdinfo", "--json", tls_array.uri("vol", tls_array.stranger))
        assert json.loads(readonly.stdout)["exports"][0]["is_read_only"] is True  # the publication's mode
        stub.DeleteSnapshot(pb.DeleteSnapshotRequest(id=stub.GetSnapshot(pb.GetSnapshotRequest(name="before")).id))


def ctl(array_proc, *args: str) -> str:
    argv = [sys.executable, "-m", "ccopy", "ctl", "--array", array_proc.api_address, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_without_certificates_an_ldev_is_closed_until_published_or_opened(array_proc):
    require_tools("nbdinfo", "qemu-io")
    ctl(array_proc, "ldev", "create", "closed", "--size", "4MiB")
    made = json.loads(ctl(array_proc, "-o", "json", "ldev", "create", "mine", "--size", "4MiB", "--publish", "node-1"))
    ctl(array_proc, "ldev", "create", "open", "--size", "4MiB", "--open")
    table = ctl(array_proc, "ldev", "list")
    assert [line.split()[7] for line in table.splitlines()[1:]] == ["none", "node-1", "all"]  # HOSTS

    address = array_proc.nbd_address
    closed = run("nbdinfo", nbd_uri(address, "closed"))
    assert refused(closed), closed.stderr
    assert "connect with a client certificate, or through the export name of a publication" in reason(
        nbd_uri(address, "closed")
    )
    assert refused(run("nbdinfo", nbd_uri(address, "mine")))  # published, but not to an anonymous host
    secret = made["publications"][0]["export_name"]
    assert secret.startswith("pub/")
    qemu_io(nbd_uri(address, secret), "write -P 0x33 0 64k", "read -P 0x33 0 64k")
    qemu_io(nbd_uri(address, "open"), "write -P 0x44 0 64k")
    log = array_proc.log_path.read_text()
    assert "export=" + secret[:8] + "…" in log and secret not in log  # a password is never logged whole
    listed = run("nbdinfo", "--list", "--json", nbd_uri(address, ""))
    assert [e["export-name"] for e in json.loads(listed.stdout)["exports"]] == ["open"]

    ctl(array_proc, "ldev", "access", "closed", "--open")
    assert run("nbdinfo", nbd_uri(address, "closed")).returncode == 0
    ctl(array_proc, "ldev", "access", "closed", "--closed")
    assert refused(run("nbdinfo", nbd_uri(address, "closed")))


def test_the_raw_refusal_is_err_policy_and_unknown_names_stay_unknown(array_proc, stub):
    stub.CreateLdev(pb.CreateLdevRequest(name="closed", size_bytes=MIB))
    client = RawClient(array_proc.nbd_address)
    assert client.go("closed")[-1][1] == ERR_POLICY
    client.close()
    client = RawClient(array_proc.nbd_address)
    assert client.go("no-such-ldev")[-1][1] == ERR_UNKNOWN
    client.close()


@pytest.mark.parametrize("open_to_all", [False, True])
def test_a_clone_gets_the_access_asked_for(stub, open_to_all):
    source = stub.CreateLdev(pb.CreateLdevRequest(name="src", size_bytes=MIB, open_to_all=open_to_all))
    clone = stub.CloneLdev(pb.CloneLdevRequest(name="copy", ldev_id=source.id, open_to_all=open_to_all))
    assert source.open_to_all is open_to_all and clone.open_to_all is open_to_all
