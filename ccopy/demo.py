"""`ccopy demo`: the main job README.md promises, on one machine.

Starts a storage array, creates a thin LDEV, attaches it as a block device
through the NBD data path (nbdfuse + loop), makes an ext4 file system, writes
files, detaches, attaches again and checks every file's checksum. Each step is
printed; the exit status is 0 only if everything read back intact.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from ccopy.launch import ArrayProcessHandle
from ccopy.rpc import client_channel
from ccopy.units import format_size
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import attached, mounted, nbd_uri


def add_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the demonstration (needs root: mount, losetup)")
    demo.add_argument("--workdir", type=Path, default=None, help="keep files here instead of a temp folder")
    demo.set_defaults(run=run_demo)


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def write_files(root: Path, count: int = 8, size: int = 4 << 20) -> dict[str, str]:
    sums = {}
    for i in range(count):
        data = os.urandom(size)
        (root / f"file-{i}.bin").write_bytes(data)
        sums[f"file-{i}.bin"] = hashlib.sha256(data).hexdigest()
    return sums


def read_sums(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob("file-*.bin"))}


def run_demo(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("error: the demo mounts file systems and uses loop devices: run it as root")
        return 1
    with tempfile.TemporaryDirectory(prefix="ccopy-demo-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return demo(work)


def demo(work: Path) -> int:
    step(f"starting storage array serial 10001, pool {work / 'pool'}")
    array = ArrayProcessHandle(pool=work / "pool", serial=10001, log_path=work / "array.log").start()
    fuse, mountpoint = work / "fuse", work / "mnt"
    try:
        print(f"    management API {array.api_address}, NBD data path {array.nbd_address}")
        with client_channel(array.api_address) as channel:
            stub = pb_grpc.ArrayStub(channel)
            ldev = stub.CreateLdev(pb.CreateLdevRequest(name="demo-vol", size_bytes=1 << 30, labels={"app": "demo"}))
            step(f"created LDEV {ldev.display_id} '{ldev.name}' of {format_size(ldev.size_bytes)}")
            print(f"    thin provisioned: {format_size(ldev.allocated_bytes)} allocated")
            uri = nbd_uri(array.nbd_address, ldev.export_name)

            step(f"attaching {uri} as a block device (nbdfuse + loop)")
            with attached(uri, fuse) as device:
                print(f"    block device {device}")
                step("making an ext4 file system and writing 8 files of 4 MiB")
                run("mkfs.ext4", "-q", "-F", device)
                with mounted(device, mountpoint):
                    written = write_files(mountpoint)
            allocated = stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).allocated_bytes
            print(f"    detached; LDEV now holds {format_size(allocated)} of {format_size(ldev.size_bytes)}")

            step("attaching again, fsck, mounting and checking every checksum")
            with attached(uri, fuse) as device:
                run("e2fsck", "-f", "-n", device)
                with mounted(device, mountpoint):
                    read = read_sums(mountpoint)
            intact = read == written
            print(f"    {sum(read.get(k) == v for k, v in written.items())}/{len(written)} files intact")
            step("pool after the demo")
            pool = stub.GetPool(pb.GetPoolRequest())
            print(
                f"    {pool.ldev_count} LDEV, provisioned {format_size(pool.provisioned_bytes)}, "
                f"allocated {format_size(pool.allocated_bytes)}, pool free {format_size(pool.free_bytes)}"
            )
    finally:
        array.stop()
    step("verdict: " + ("PASS, the file system came back intact" if intact else "FAIL, data differs"))
    return 0 if intact else 1
