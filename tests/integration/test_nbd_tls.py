"""NBD over TLS with clients nobody here wrote: nbdinfo, nbdcopy and nbdfuse (libnbd,
`nbds://` URIs with `tls-certificates=`) and qemu-img/qemu-io (`tls-creds-x509`), against
an array that requires TLS and client certificates. Plaintext clients, clients without a
certificate and clients with a certificate of another CA get the protocol's refusal.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ccopy.waiting import wait_progressing
from tests.conftest import require_root, require_tools
from tests.integration.tls_array import MIB, TlsArray, run


def test_libnbd_clients_read_and_write_over_tls(tls_array: TlsArray, tmp_path: Path):
    info = run("nbdinfo", tls_array.uri("vol", tls_array.good))
    assert info.returncode == 0, info.stderr
    assert "with TLS" in info.stdout and "67108864" in info.stdout
    data = tmp_path / "in.bin"
    data.write_bytes(os.urandom(4 * MIB))
    copied = run("nbdcopy", str(data), tls_array.uri("vol", tls_array.good))
    assert copied.returncode == 0, copied.stderr
    back = tmp_path / "out.bin"
    assert run("nbdcopy", tls_array.uri("vol", tls_array.good), str(back)).returncode == 0
    assert back.read_bytes()[: 4 * MIB] == data.read_bytes()
    log = (tmp_path / "array.log").read_text()
    assert "certificate=node-1" in log  # the host is named by its certificate
    assert "PRIVATE KEY" not in log


def test_qemu_reads_and_writes_over_tls(tls_array: TlsArray):
    host, port = tls_array.array.nbd_address.rsplit(":", 1)
    creds = f"tls-creds-x509,id=tls0,dir={tls_array.good},endpoint=client"
    image = f"driver=nbd,host={host},port={port},export=vol,tls-creds=tls0"
    written = run("qemu-io", "--object", creds, "--image-opts", image, "-c", "write -P 0x5a 1M 64k")
    assert written.returncode == 0 and "wrote 65536" in written.stdout, written.stderr
    read = run("qemu-io", "--object", creds, "--image-opts", image, "-r", "-c", "read -P 0x5a 1M 64k")
    assert read.returncode == 0 and "read 65536" in read.stdout, read.stdout + read.stderr
    info = run("qemu-img", "info", "--object", creds, "--image-opts", image)
    assert info.returncode == 0 and "64 MiB" in info.stdout, info.stderr


def test_nbdfuse_serves_a_file_over_tls(tls_array: TlsArray, tmp_path: Path):
    """nbdfuse 1.14 refuses file paths in URIs (tls-certificates=), so it reaches the array the
    way it runs any NBD program: nbdkit's nbd plugin, socket-activated, speaking TLS to the array."""
    require_root()
    require_tools("nbdfuse", "nbdkit", "fusermount3")
    mountpoint = tmp_path / "fuse"
    mountpoint.mkdir()
    host, port = tls_array.array.nbd_address.rsplit(":", 1)
    proxy = ["nbdkit", "nbd", f"hostname={host}", f"port={port}", "export=vol", "tls=require",
             f"tls-certificates={tls_array.good}"]  # fmt: skip
    fuse = subprocess.Popen(["nbdfuse", str(mountpoint), "[", *proxy, "]"])
    exported = mountpoint / "nbd"
    try:
        wait_progressing(lambda: exported.exists() or fuse.poll() is not None, bool, "nbdfuse serving the export")
        assert exported.stat().st_size == 64 * MIB
        with exported.open("r+b") as f:
            f.seek(2 * MIB)
            f.write(b"over tls" * 512)
            f.flush()
            os.fsync(f.fileno())
            f.seek(2 * MIB)
            assert f.read(8) == b"over tls"
    finally:
        subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        fuse.wait(60)
    assert "certificate=node-1" in (tmp_path / "array.log").read_text()


@pytest.mark.parametrize("who", ["plaintext", "anonymous", "rogue"])
def test_clients_without_the_right_certificate_get_the_protocol_refusal(tls_array: TlsArray, tmp_path, who):
    folder = {"plaintext": None, "anonymous": tls_array.anonymous, "rogue": tls_array.rogue}[who]
    refused = run("nbdinfo", tls_array.uri("vol", folder))
    assert refused.returncode != 0 and "67108864" not in refused.stdout
    log = tmp_path / "array.log"
    if who == "plaintext":
        assert "Operation not supported" in refused.stderr  # libnbd's words for NBD_REP_ERR_TLS_REQD
    else:  # the server logs its side of the failed TLS handshake when it notices (the client may leave first)
        wait_progressing(log.read_text, lambda text: "nbd_tls_refused" in text, "the array logging the refusal")
    assert "session_opened" not in log.read_text()  # no export was ever opened
