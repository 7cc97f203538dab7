"""The link between sites over mTLS: each array serves mTLS and presents a client certificate to the other."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import grpc

from ccopy.launch import ArrayProcessHandle, free_port
from ccopy.waiting import replication_progress, wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.rpc import TlsFiles, client_channel
from tests.api.test_array_api import code_of
from tests.replication.conftest import export_of, read_all
from tests.replication.test_remote_copy import write

MIB = 1 << 20


def mtls_array(tmp_path: Path, pki: Path, site: str, serial: int, api: str, remote: str, client: str):
    serve = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    serve += ["--tls-client-ca", str(pki / "ca.pem")]
    link = ["--remote", remote, "--remote-ca", str(pki / "ca.pem")]
    link += ["--remote-cert", str(pki / f"{client}.pem"), "--remote-key", str(pki / f"{client}.key")]
    return ArrayProcessHandle(
        pool=tmp_path / site, serial=serial, log_path=tmp_path / f"{site}.log", api=api, extra_args=serve + link
    ).start()


def test_pairing_and_transfer_over_mtls_and_a_rogue_client_certificate_is_refused(tmp_path: Path, pki: Path):
    main_api, backup_api, rogue_api = (f"127.0.0.1:{free_port()}" for _ in range(3))
    backup = mtls_array(tmp_path, pki, "backup", 2, backup_api, main_api, client="client")
    main = mtls_array(tmp_path, pki, "main", 1, main_api, backup_api, client="client")
    rogue = mtls_array(tmp_path, pki, "rogue", 3, rogue_api, backup_api, client="rogue")
    admin = TlsFiles(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    try:
        with client_channel(main_api, admin) as m, client_channel(backup_api, admin) as b:
            main_stub, backup_stub = pb_grpc.ArrayStub(m), pb_grpc.ArrayStub(b)
            ldev = main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="sales", size_bytes=8 * MIB))
            data = os.urandom(2 * MIB)
            write(main.nbd_address, "sales", MIB, data)
            pair = main_stub.CreatePair(pb.CreatePairRequest(group_name="shop", pvol_id=ldev.id))
            write(main.nbd_address, "sales", 4 * MIB, data[:MIB])  # journaled, travels over the mTLS stream
            request = pb.GetJournalGroupRequest(name="shop")
            wait_progressing(
                lambda: (main_stub.GetJournalGroup(request), backup_stub.GetJournalGroup(request)),
                lambda v: v[1].pairs[0].state == pb.PAIR and v[1].applied_seq == v[0].main_seq >= 1,
                "the pair over mTLS reaching PAIR, in sync", progress=lambda v: replication_progress(*v),
            )  # fmt: skip
            svol_export = export_of(backup_stub, pair.remote_ldev_id)
            main_bytes = read_all(main.nbd_address, "sales", 8 * MIB)
            assert hashlib.sha256(read_all(backup.nbd_address, svol_export, 8 * MIB)).digest() == (
                hashlib.sha256(main_bytes).digest()
            )

        with client_channel(rogue_api, admin) as r:
            rogue_stub = pb_grpc.ArrayStub(r)
            ldev = rogue_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name="p", size_bytes=MIB))
            request = pb.CreatePairRequest(group_name="intruder", pvol_id=ldev.id)
            assert code_of(rogue_stub.CreatePair, request) == grpc.StatusCode.UNAVAILABLE  # backup refused it
            assert rogue_stub.ListPairs(pb.ListPairsRequest()).pairs == []
    finally:
        for handle in (rogue, main, backup):
            handle.stop()
