"""What synchronous copy costs the host, against async and none; and what a resync moves.

In one run (two linked arrays on this machine, each site on its own CPU and
file system as in bench.replication):
    host writes   fio over NBD to an LDEV not paired, paired async and paired
                  synchronous, with 0, 1 and 5 ms of emulated link round trip
                  (--link-delay-ms on both arrays): MiB/s, IOPS, p50, p99
    resync        a 10 GiB group (two 5 GiB LDEVs written in full) copied to the
                  backup (the full copy, timed), split, 1% of it rewritten in
                  scattered 64 KiB regions, then resynced: seconds and bytes
                  moved, side by side

Run as: python -m bench.pair_ops [--runtime 10] [--only host-writes|resync]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.nbd_fio import dd_fdatasync_mib_s, prefill
from bench.replication import GIB, Sites, host_fio, print_report
from ccopy_api import array_pb2 as pb
from tests.integration.nbd_raw import RawClient

MIB = 1 << 20
REGION = 64 << 10
WORKLOADS = {
    "rand-write 4K QD1": {"rw": "randwrite", "bs": "4k", "iodepth": "1"},
    "seq-write 1M QD4": {"rw": "write", "bs": "1M", "iodepth": "4"},
}
DELAYS_MS = (0.0, 1.0, 5.0)


def host_writes(work: Path, runtime: int) -> list[str]:
    lines = [
        "| workload | replication | link round trip | MiB/s | IOPS | p50 latency | p99 latency |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for delay in DELAYS_MS:
        (work / f"delay-{delay:g}").mkdir()
        sites = Sites(work / f"delay-{delay:g}", link_delay_ms=delay)
        try:
            modes = ("off", "async", "sync") if delay == 0 else ("async", "sync")
            for n, (workload, params) in enumerate(WORKLOADS.items()):
                for mode in modes:
                    name = f"{mode}-{n}"
                    ldev = sites.ldev(name)
                    prefill(sites.uri(name), GIB)
                    if mode != "off":
                        sites.pair(ldev, f"g-{name}", synchronous=mode == "sync")
                    r = host_fio(sites.uri(name), workload, params, runtime)
                    cells = f"{r.mib_s:.1f} | {r.iops:.0f} | {r.p50_ms:.3f} ms | {r.p99_ms:.3f} ms"
                    lines.append(f"| {workload} | {mode} | {delay:g} ms | {cells} |")
        finally:
            sites.close()
    return lines


def resync(work: Path) -> list[str]:
    (work / "resync").mkdir()
    sites = Sites(work / "resync")
    try:
        ldevs = [sites.ldev(f"vol{i}", 5 * GIB) for i in range(2)]
        for ldev in ldevs:
            sites.write_sequentially(ldev.name, "5G")
        os.sync()  # the copy starts on a quiet disk, as dd does: not behind the volumes' own writeback
        start = time.monotonic()
        for ldev in ldevs:
            sites.main_stub.CreatePair(
                pb.CreatePairRequest(group_name="big", pvol_id=ldev.id, journal_capacity_bytes=GIB)
            )
        sites.wait_in_sync("big")
        full_seconds = time.monotonic() - start
        full_moved = sum(p.copied_bytes for p in sites.backup_stub.ListPairs(pb.ListPairsRequest()).pairs)
        sites.main_stub.SplitPairs(pb.SplitPairsRequest(group_name="big"))
        rng = random.Random(6)
        regions = (10 * GIB // 100) // REGION  # 1% of the group
        payload = rng.randbytes(REGION)
        writers = [RawClient(sites.main.nbd_address) for _ in ldevs]
        for writer, ldev in zip(writers, ldevs, strict=True):
            writer.go(ldev.name)
        for writer in writers:  # distinct regions: regions // 2 on each LDEV
            for offset in rng.sample(range(5 * GIB // REGION), regions // 2):
                assert writer.write(offset * REGION, payload) == 0
        for writer in writers:
            writer.close()
        start = time.monotonic()
        sites.main_stub.ResyncPairs(pb.ResyncPairsRequest(group_name="big"))
        sites.wait_in_sync("big")
        seconds = time.monotonic() - start
        pairs = sites.backup_stub.ListPairs(pb.ListPairsRequest(group_name="big")).pairs
        moved = sum(p.copied_bytes for p in pairs)
        peer = dd_fdatasync_mib_s(sites.backup_fs, 10240)  # as much as the full copy, on the S-VOLs' file system
    finally:
        sites.close()
    changed = regions * REGION
    full_rate, resync_rate = full_moved / MIB / full_seconds, moved / MIB / seconds
    return [
        "| 10 GiB group (2 x 5 GiB, written in full) | seconds | MiB moved | MiB/s | / dd |",
        "| --- | --- | --- | --- | --- |",
        f"| full copy (pairing) | {full_seconds:.2f} | {full_moved / MIB:.0f} | {full_rate:.0f} "
        f"| {full_rate / peer:.2f} |",
        f"| resync after {changed / MIB:.0f} MiB changed in {regions} regions of 64 KiB | {seconds:.2f} | "
        f"{moved / MIB:.0f} | {resync_rate:.0f} | {resync_rate / peer:.2f} |",
        f"| resync / full copy | {seconds / full_seconds:.3f} | {moved / full_moved:.3f} | | |",
        f"| dd conv=fdatasync of 10 GiB on the backup's file system | {10240 / peer:.2f} | 10240 | {peer:.0f} | 1.00 |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--only", choices=("host-writes", "resync"))
    args = parser.parse_args()
    sections = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-pairbench-") as tmp:
        if args.only in (None, "host-writes"):
            title = "Host writes: off, async, sync, by link round trip (fio --ioengine=nbd, 1 GiB LDEVs)"
            sections[title] = host_writes(Path(tmp), args.runtime)
        if args.only in (None, "resync"):
            sections["Resync after a split, against the full copy"] = resync(Path(tmp))
    print_report(sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
