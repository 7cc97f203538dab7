"""Snapshot costs, measured on a real array process in one run.

    write throughput   fio over NBD with 0, 1 and 8 live snapshots (each
                       snapshot taken after a burst of writes, so chunks need
                       copy-on-write again after every one)
    creation time      CreateSnapshot on 1 GiB, 100 GiB and 1 TiB LDEVs
    group stall        CreateSnapshotGroup of 16 LDEVs while 16 writers run:
                       how long writes waited at the barrier
    clone time         a 10 GiB LDEV holding 100 MiB, and a 1 GiB full one

Run with `python -m bench.snapshots [--runtime 10]`; prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from bench.nbd_fio import dd_fdatasync_mib_s, fio, machine, prefill
from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from tests.integration.nbd_raw import RawClient

GIB = 1 << 30
MIB = 1 << 20
WORKLOADS = {
    "seq-write 1M QD4": {"rw": "write", "bs": "1M", "iodepth": "4"},
    "rand-write 4K QD16": {"rw": "randwrite", "bs": "4k", "iodepth": "16"},
}


SECTIONS = {
    "throughput": "Host writes with live snapshots (fio --ioengine=nbd, 1 GiB LDEV)",
    "creation": "Snapshot creation time (30 snapshots each)",
    "stall": "Snapshot group stall",
    "clone": "Clone time",
}


def write_throughput(stub, nbd: str, runtime: int) -> list[str]:
    rows: list[str] = []
    iops: list[list[float]] = []
    for count in (0, 1, 8):
        cells: list[str] = []
        per_workload: list[float] = []
        for workload, params in WORKLOADS.items():
            name = f"tp-{count}-{len(cells)}"
            ldev = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=GIB))
            uri = f"nbd://{nbd}/{name}"
            prefill(uri, GIB)
            for n in range(count):
                stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"{name}-s{n}", ldev_id=ldev.id))
                if n < count - 1:  # a burst between snapshots, so they do not share every copy
                    fio(uri, "burst", {"rw": "randwrite", "bs": "64k", "iodepth": "8"}, GIB, 1)
            result = fio(uri, workload, params, GIB, runtime)
            cells.append(f"{result.mib_s:.0f} MiB/s, {result.iops:.0f} IOPS")
            per_workload.append(result.iops)
            snap_bytes = stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).snapshot_bytes
            cells[-1] += f" (CoW {snap_bytes / MIB:.0f} MiB)"
            stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id, cascade=True))
        rows.append(f"| {count} | " + " | ".join(cells) + " |")
        iops.append(per_workload)
    if len(iops) > 1:  # issue 18's measure: what one live snapshot leaves of the writes
        ratios = (f"{one / none:.2f}" for one, none in zip(iops[1], iops[0], strict=True))
        rows.append("| 1 / 0 (IOPS) | " + " | ".join(ratios) + " |")
    return ["| live snapshots | " + " | ".join(WORKLOADS) + " |", "| --- | --- | --- |", *rows]


def creation_time(stub, nbd: str) -> list[str]:
    rows = [
        "| LDEV size | data written | CreateSnapshot p50 | p99 | CoW space right after |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, label in ((GIB, "1 GiB"), (100 * GIB, "100 GiB"), (1 << 40, "1 TiB")):
        ldev = stub.CreateLdev(
            pb.CreateLdevRequest(open_to_all=True, name=f"ct-{label.replace(' ', '')}", size_bytes=size)
        )
        client = RawClient(nbd)
        client.go(ldev.name)
        for i in range(64):  # 64 MiB spread over the whole LDEV
            assert client.write((size // 64) * i, os.urandom(MIB)) == 0
        client.close()
        times = []
        for n in range(30):
            start = time.perf_counter()
            stub.CreateSnapshot(pb.CreateSnapshotRequest(name=f"{ldev.name}-{n}", ldev_id=ldev.id))
            times.append((time.perf_counter() - start) * 1000)
        cow = stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).snapshot_bytes
        times.sort()
        rows.append(f"| {label} | 64 MiB | {times[15]:.2f} ms | {times[-1]:.2f} ms | {cow} B |")
        stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id, cascade=True))
    return rows


def group_stall(stub, nbd: str, groups: int = 60) -> list[str]:
    ids = [
        stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=f"gs-{i}", size_bytes=256 * MIB)).id
        for i in range(16)
    ]
    stop = threading.Event()
    writes = [0] * 16

    def writer(i: int) -> None:
        client = RawClient(nbd)
        client.go(f"gs-{i}")
        block, n = os.urandom(4096), 0
        while not stop.is_set():
            assert client.write((n * 4096 * 7) % (256 * MIB), block) == 0
            n += 1
        writes[i] = n
        client.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(1)
    stalls, calls = [], []
    for n in range(groups):
        start = time.perf_counter()
        group = stub.CreateSnapshotGroup(pb.CreateSnapshotGroupRequest(name=f"gs-g{n}", ldev_ids=ids))
        calls.append((time.perf_counter() - start) * 1000)
        stalls.append(group.stall_micros / 1000)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()
    for group in stub.ListSnapshotGroups(pb.ListSnapshotGroupsRequest(page_size=1000)).groups:
        stub.DeleteSnapshotGroup(pb.DeleteSnapshotGroupRequest(id=group.id))
    for i in ids:
        stub.DeleteLdev(pb.DeleteLdevRequest(id=i, cascade=True))
    return [
        "| groups of 16 LDEVs, 16 writers running | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        "| writes held at the barrier | " + _quantiles(stalls) + " |",
        "| CreateSnapshotGroup call | " + _quantiles(calls) + " |",
        f"| writes done by the 16 writers meanwhile | {sum(writes)} | | |",
    ]


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    return f"{ordered[len(ordered) // 2]:.2f} ms | {p99:.2f} ms | {ordered[-1]:.2f} ms"


def clone_time(stub, nbd: str, folder: Path) -> list[str]:
    """Clones against `dd conv=fdatasync` of the same amount on the same file system (issue 18:
    a copy should reach at least 0.8 of it)."""
    rows = [
        "| source | data | clone time (until NORMAL) | clone allocated | MiB/s of data | dd MiB/s | clone / dd |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, data, label in ((10 * GIB, 100 * MIB, "10 GiB"), (GIB, GIB, "1 GiB")):
        name = f"cl-{label.replace(' ', '')}"
        ldev = stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=size))
        client = RawClient(nbd)
        client.go(name)
        step = size // (data // MIB)
        for i in range(data // MIB):
            assert client.write(i * step, os.urandom(MIB)) == 0
        client.close()
        start = time.perf_counter()
        clone = stub.CloneLdev(pb.CloneLdevRequest(open_to_all=True, name=f"{name}-clone", ldev_id=ldev.id))
        while stub.GetLdev(pb.GetLdevRequest(id=clone.id)).state != pb.LDEV_STATE_NORMAL:
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        allocated = stub.GetLdev(pb.GetLdevRequest(id=clone.id)).allocated_bytes
        rate = data / MIB / seconds
        peer = dd_fdatasync_mib_s(folder, data // MIB)
        rows.append(
            f"| {label} | {data // MIB} MiB | {seconds * 1000:.0f} ms | {allocated / MIB:.0f} MiB "
            f"| {rate:.0f} | {peer:.0f} | {rate / peer:.2f} |"
        )
        stub.DeleteLdev(pb.DeleteLdevRequest(id=clone.id))
        stub.DeleteLdev(pb.DeleteLdevRequest(id=ldev.id, cascade=True))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=int, default=10, help="seconds per fio workload")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this part (repeatable); default: all"
    )
    args = parser.parse_args()
    parts = args.only or list(SECTIONS)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-snapbench-") as tmp:
        handle = ArrayProcessHandle(pool=Path(tmp) / "pool", serial=1, log_path=Path(tmp) / "array.log").start()
        try:
            with grpc.insecure_channel(handle.api_address) as channel:
                stub = pb_grpc.ArrayStub(channel)
                nbd = handle.nbd_address
                runs = {
                    "throughput": lambda: write_throughput(stub, nbd, args.runtime),
                    "creation": lambda: creation_time(stub, nbd),
                    "stall": lambda: group_stall(stub, nbd),
                    "clone": lambda: clone_time(stub, nbd, Path(tmp)),
                }
                sections = {SECTIONS[part]: runs[part]() for part in SECTIONS if part in parts}
        finally:
            handle.stop()
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}\n")
    for title, lines in sections.items():
        print(f"#### {title}\n")
        print("\n".join(lines) + "\n")
        sys.stdout.flush()

    return 0


if __name__ == "__main__":
    sys.exit(main())
