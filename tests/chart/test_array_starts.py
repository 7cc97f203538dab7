"""The in-cluster array starts with the arguments the chart renders for it.

The array refuses to serve its API or its NBD data path on 0.0.0.0 without TLS. With
`array.inCluster.tlsSecret` the chart gave TLS to the API only, so the array's Pod would
never have started; here the rendered container's arguments, with the Secret's files and
the pool's volume made locally, start a real array process, with and without the Secret.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ccopy_common.pki import CertificateAuthority
from tests.chart.helm import container, rendered

SECRET_MOUNT = "/etc/ccopy/tls/"


def local_argv(args: list[str], pool: Path, secret: Path) -> list[str]:
    """The container's arguments on this machine: its pool and Secret here, any free port."""
    out = []
    for arg in args:
        arg = arg.replace("=/pool", f"={pool}").replace(SECRET_MOUNT, f"{secret}/")
        if arg.startswith(("--api=0.0.0.0:", "--nbd=0.0.0.0:", "--metrics=0.0.0.0:")):
            arg = arg.rsplit(":", 1)[0] + ":0"  # the same address: the array's TLS check sees 0.0.0.0
        out.append(arg)
    return out


@pytest.mark.parametrize("tls", [True, False], ids=["tlsSecret", "insecure-trial"])
def test_the_rendered_array_container_starts(tmp_path, tls):
    sets = ["array.address=", "array.inCluster.enabled=true", "array.inCluster.serial=32001"]
    sets += ["array.inCluster.tlsSecret=array-tls"] if tls else []
    docs = rendered(*sets)
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    array = container(docs, "StatefulSet", statefulset["metadata"]["name"], "array")
    secret = tmp_path / "secret"
    if tls:  # the Secret's keys, as cert-manager or a person makes them
        ca = CertificateAuthority(secret, "ca")
        issued = ca.issue("array", san="IP:127.0.0.1,DNS:localhost")
        for src, key in ((ca.cert, "ca.crt"), (issued.cert, "tls.crt"), (issued.key, "tls.key")):
            (secret / key).write_bytes(src.read_bytes())
    argv = [sys.executable, "-m", "ccopy", *local_argv(array["args"], tmp_path / "pool", secret)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # "ready api=... nbd=..." once serving; nothing if it exits
        assert first.startswith("ready "), f"the array did not start: {process.wait(30)} {process.stderr.read()}"
    finally:
        process.terminate()
        process.wait(30)
        process.stdout.close()
        process.stderr.close()
