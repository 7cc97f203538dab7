"""Certificates made with openssl for the tests, the benchmarks and the demo: a CA, servers
with SANs, clients with groups.

Kubernetes reads a client certificate's CN as the user name and its O as the
groups, so one CA gives every test component an identity RBAC can judge; the
array's mTLS tests use the same CA code.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class CertificateAuthority:
    """A CA in `folder` (`<name>.pem`, `<name>.key`) that signs what it is asked to."""

    def __init__(self, folder: Path, name: str = "ca", algorithm: str = "rsa:2048") -> None:
        self.folder, self.name, self.algorithm = folder, name, algorithm
        self.cert, self.key = folder / f"{name}.pem", folder / f"{name}.key"
        folder.mkdir(parents=True, exist_ok=True)
        if not self.cert.exists():
            openssl("req", "-x509", "-newkey", algorithm, *self._key_options(), "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-keyout", str(self.key), "-out", str(self.cert))  # fmt: skip

    def issue(self, name: str, cn: str | None = None, groups: tuple[str, ...] = (), san: str | None = None) -> Issued:
        """A certificate for `name` (files `<name>.pem`/`.key`): a server one when `san` is
        given (e.g. "IP:127.0.0.1,DNS:localhost"), a client one otherwise."""
        cert, key, csr, ext = (self.folder / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
        subject = "".join(f"/O={group}" for group in groups) + f"/CN={cn or name}"
        openssl("req", "-newkey", self.algorithm, *self._key_options(), "-nodes", "-subj", subject,
                "-keyout", str(key), "-out", str(csr))  # fmt: skip
        ext.write_text(
            f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n" if san else "extendedKeyUsage=clientAuth\n"
        )
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
                "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
        return Issued(cert, key)

    def x509_folder(self, folder: Path, role: str, issued: Issued | None) -> Path:
        return x509_folder(folder, role, self.cert, issued)

    def _key_options(self) -> list[str]:
        return ["-pkeyopt", "ec_paramgen_curve:prime256v1"] if self.algorithm == "ec" else []


def x509_folder(folder: Path, role: str, ca: Path, issued: Issued | None) -> Path:
    """The layout GnuTLS users read (libnbd's tls-certificates, nbdkit's --tls-certificates,
    qemu's tls-creds-x509 dir): ca-cert.pem, and `<role>`-cert.pem/-key.pem when given.
    Made anew each time (a restarted process picks up renewed files); the key stays private."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    shutil.copy(ca, folder / "ca-cert.pem")
    if issued is not None:
        shutil.copy(issued.cert, folder / f"{role}-cert.pem")
        key = folder / f"{role}-key.pem"
        shutil.copyfile(issued.key, key)  # inside a folder only its owner may enter
        key.chmod(0o600)
    return folder
