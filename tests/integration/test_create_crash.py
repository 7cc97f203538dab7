"""An LDEV (a CSI volume: host access deny-by-default) is never, even for an instant after
a crash, open to any NBD client by its name.

strace kills the array at its k-th durability call (fsync, fdatasync) inside the
CreateLdev call, for every k until one completes uncrashed. After each crash the array
restarts and the caller repeats the create (CSI CreateVolume is retried by name): the
LDEV must then be closed to hosts it is not published to, and opening it by name refused.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest

from ccopy.launch import ArrayProcessHandle
from ccopy.waiting import wait_progressing
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from tests.conftest import require_tools
from tests.integration.nbd_raw import REP_ACK, RawClient

MIB = 1 << 20


def create_under_strace(array: ArrayProcessHandle, kill_at: int, folder: Path) -> bool:
    """CreateLdev with strace killing the array at the handler's `kill_at`-th durability call;
    True when the call finished before that."""
    assert array.process is not None
    pid = array.process.pid
    attached_log = folder / "strace.err"
    with attached_log.open("w") as err:
        tracer = subprocess.Popen(
            ["strace", "-f", "-o", str(folder / "strace.out"), "-e", "trace=fsync,fdatasync",
             "-e", f"inject=fsync,fdatasync:signal=KILL:when={kill_at}", "-p", str(pid)],
            stderr=err,
        )  # fmt: skip
    try:
        # strace says "Process N attached with T threads" once it holds every thread there is
        # (threads started later are followed, -f); not before it says so is the array traced.
        wait_progressing(
            lambda: " attached" in attached_log.read_text(), bool, "strace attaching to every thread of the array"
        )
        with grpc.insecure_channel(array.api_address) as channel:
            request = pb.CreateLdevRequest(name="pvc-1", size_bytes=8 * MIB, max_iops=100)
            pb_grpc.ArrayStub(channel).CreateLdev(request, timeout=30)
        return True
    except grpc.RpcError:
        return False
    finally:
        stop_tracer(tracer)


def stop_tracer(tracer: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL: once its injected SIGKILL has killed the array, strace can sit
    waiting for the dead threads and ignore SIGTERM (seen on a fresh-clone trial, 2026-12-03),
    and while it traces them the array is a zombie nobody may reap."""
    tracer.terminate()
    try:
        tracer.wait(30)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait(30)


@pytest.mark.timeout(900)
def test_a_crash_at_any_point_of_create_never_leaves_the_ldev_open_by_name(tmp_path: Path):
    require_tools("strace")
    for kill_at in range(1, 40):
        folder = tmp_path / f"k{kill_at}"
        folder.mkdir()
        array = ArrayProcessHandle(pool=folder / "pool", serial=77, log_path=folder / "array.log").start()
        try:
            finished = create_under_strace(array, kill_at, folder)
            if not finished:
                array.kill()
                array.start()
            with grpc.insecure_channel(array.api_address) as channel:
                stub = pb_grpc.ArrayStub(channel)
                request = pb.CreateLdevRequest(name="pvc-1", size_bytes=8 * MIB, max_iops=100)
                ldev = stub.CreateLdev(request, timeout=30)  # the retry, as CSI makes it
                assert not ldev.open_to_all and ldev.max_iops == 100, (kill_at, ldev)
            client = RawClient(array.nbd_address)
            final = client.go("pvc-1")[-1][1]
            client.close()
            assert final != REP_ACK, f"opened by name after a crash at durability call {kill_at}"
        finally:
            array.stop()
        if finished:
            print(f"crashed at each of the create's durability calls 1..{kill_at - 1}; call {kill_at} never came")
            assert kill_at > 2, "strace never reached the create's durability calls: the test proves nothing"
            return
    pytest.fail("CreateLdev never finished under strace")
