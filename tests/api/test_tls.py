"""TLS and mTLS on the management API, with certificates made by openssl here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.rpc import TlsFiles, client_channel


def start(tmp_path: Path, pki: Path, mtls: bool) -> ArrayProcessHandle:
    args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    if mtls:
        args += ["--tls-client-ca", str(pki / "ca.pem")]
    return ArrayProcessHandle(pool=tmp_path / "pool", serial=9, log_path=tmp_path / "log", extra_args=args).start()


def info(address: str, tls: TlsFiles | None) -> pb.ArrayInfo:
    with client_channel(address, tls) as channel:
        return pb_grpc.ArrayStub(channel).GetArrayInfo(pb.GetArrayInfoRequest(), timeout=10)


def test_tls_server_talks_to_clients_that_trust_its_ca(tmp_path: Path, pki: Path):
    handle = start(tmp_path, pki, mtls=False)
    try:
        assert info(handle.api_address, TlsFiles(ca=pki / "ca.pem")).serial == 9
        with pytest.raises(grpc.RpcError) as err:
            info(handle.api_address, None)  # plaintext client
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError):
            info(handle.api_address, TlsFiles(ca=pki / "rogue-ca.pem"))  # does not trust the server
    finally:
        handle.stop()


def test_mtls_server_requires_a_client_certificate_from_its_ca(tmp_path: Path, pki: Path):
    handle = start(tmp_path, pki, mtls=True)
    try:
        good = TlsFiles(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
        assert info(handle.api_address, good).serial == 9
        for bad in (
            TlsFiles(ca=pki / "ca.pem"),  # no client certificate
            TlsFiles(ca=pki / "ca.pem", cert=pki / "rogue.pem", key=pki / "rogue.key"),  # another CA's
        ):
            with pytest.raises(grpc.RpcError) as err:
                info(handle.api_address, bad)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        handle.stop()


def test_half_tls_configuration_is_refused_at_start(tmp_path: Path, pki: Path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccopy",
            "array",
            "serve",
            "--pool",
            str(tmp_path / "p"),
            "--tls-cert",
            str(pki / "server.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "--tls-cert needs --tls-key" in result.stderr
