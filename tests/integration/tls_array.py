"""An array whose NBD data path requires TLS and client certificates, with certificate
folders for clients nobody here wrote (libnbd's `tls-certificates=`, qemu's
`tls-creds-x509` dir, nbdkit's `tls-certificates=`).

Its LDEV "vol" is published to host "node-1", whose certificate is `good`; `stranger`
holds a certificate of the same CA for a host "node-3" that nothing is published to.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.pki import CertificateAuthority

MIB = 1 << 20


@dataclass
class TlsArray:
    array: ArrayProcessHandle
    good: Path  # ca-cert.pem, client-cert.pem, client-key.pem of host node-1
    stranger: Path  # a certificate of our CA for host node-3, to which nothing is published
    rogue: Path  # a client certificate of another CA
    anonymous: Path  # the CA only: no client certificate

    def uri(self, export: str, certificates: Path | None = None) -> str:
        if certificates is None:
            return f"nbd://{self.array.nbd_address}/{export}"
        return f"nbds://{self.array.nbd_address}/{export}?tls-certificates={certificates}"

    @contextmanager
    def stub(self) -> Iterator[pb_grpc.ArrayStub]:
        with grpc.insecure_channel(self.array.api_address) as channel:
            yield pb_grpc.ArrayStub(channel)


@contextmanager
def tls_array(folder: Path) -> Iterator[TlsArray]:
    pki = folder / "pki"
    ca, rogue_ca = CertificateAuthority(pki, "ca"), CertificateAuthority(pki, "rogue-ca")
    server = ca.issue("server", san="IP:127.0.0.1,DNS:localhost")
    node, stranger = ca.issue("node-1"), ca.issue("node-3")
    intruder = rogue_ca.issue("node-2")
    array = ArrayProcessHandle(
        pool=folder / "pool", serial=41, log_path=folder / "array.log",
        extra_args=["--nbd-tls-cert", str(server.cert), "--nbd-tls-key", str(server.key),
                    "--nbd-tls-client-ca", str(ca.cert)],
    ).start()  # fmt: skip
    try:
        made = TlsArray(
            array,
            ca.x509_folder(folder / "good", "client", node),
            ca.x509_folder(folder / "stranger", "client", stranger),
            ca.x509_folder(folder / "rogue", "client", intruder),  # trusts our CA, holds the other's certificate
            ca.x509_folder(folder / "anonymous", "client", None),
        )
        with made.stub() as stub:
            ldev = stub.CreateLdev(pb.CreateLdevRequest(name="vol", size_bytes=64 * MIB))
            stub.PublishLdev(pb.PublishLdevRequest(ldev_id=ldev.id, host_id="node-1"))
        yield made
    finally:
        array.stop()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
