"""Asynchronous remote copy: what it costs the host, and how far behind the backup is.

In one run, with two linked arrays on this machine. Each site gets its own
CPU and file system, as it would its own machine: the main array and fio on
CPU 0, the backup array on CPU 1 with its pool on an ext4 of its own (a loop
device), so its fsyncs do not stall the main site's writes in a shared ext4
journal (they still share one disk):
    host writes   fio over NBD on an LDEV that is not paired and on one that
                  is paired (async), side by side: MiB/s, IOPS, p50/p99 latency,
                  unthrottled and at rates the replication sustains
    lag           fio writing 50 MiB/s to a paired LDEV for 20 s while the
                  main array's lag (age of the oldest unapplied write) is sampled
    transfer      initial copy of 512 MiB of data, and catching up on a 512 MiB
                  burst of journaled writes, over loopback

Run as: python -m bench.replication [--runtime 10] [--rounds 5] [--unpinned] [--only host-writes]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from bench.nbd_fio import Result, dd_fdatasync_mib_s, fio, machine, prefill, spread
from ccopy.launch import ArrayProcessHandle, free_port
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc

GIB = 1 << 30
MIB = 1 << 20
# As fast as the host can (the journal then outgrows what the backup drains,
# and spills to disk), and at rates the replication sustains.
WORKLOADS = {
    "seq-write 1M QD4": {"rw": "write", "bs": "1M", "iodepth": "4"},
    "rand-write 4K QD16": {"rw": "randwrite", "bs": "4k", "iodepth": "16"},
    "seq-write 1M QD4 at 100 MiB/s": {"rw": "write", "bs": "1M", "iodepth": "4", "rate": "100m"},
    "rand-write 4K QD16 at 5000 IOPS": {"rw": "randwrite", "bs": "4k", "iodepth": "16", "rate_iops": "5000"},
}


MAIN_SITE_CPUS, BACKUP_SITE_CPUS = {0}, {1}
SECTIONS = {
    "host-writes": "Host writes, replication off and async (fio --ioengine=nbd, 1 GiB LDEVs)",
    "lag": "Lag at a steady 50 MiB/s",
    "transfer": "Transfer",
}


def pin(array: ArrayProcessHandle, cpus: set[int]) -> None:
    """Every thread of the array process to `cpus` (threads started later inherit it)."""
    assert array.process is not None
    for task in Path(f"/proc/{array.process.pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def host_fio(uri: str, name: str, params: dict[str, str], runtime: int, pid: int = 0, pinned: bool = True) -> Result:
    """fio at the main site: on the main array's CPU when the sites are pinned (`pid`: the
    server whose CPU is counted)."""
    cpus = {"cpus_allowed": ",".join(map(str, sorted(MAIN_SITE_CPUS)))} if pinned else {}
    return fio(uri, name, {**params, **cpus}, GIB, runtime, pid=pid)


def print_report(sections: dict[str, list[str]]) -> None:
    """The date and machine, then each section's markdown table, as docs/benchmarks.md takes them."""
    print(f"{time.strftime('%Y-%m-%d')}, {machine()}\n")
    for title, lines in sections.items():
        print(f"#### {title}\n\n" + "\n".join(lines) + "\n")


class Sites:
    def __init__(self, work: Path, link_delay_ms: float = 0.0, pinned: bool = True) -> None:
        self.link_delay_ms = link_delay_ms
        self.pinned = pinned  # each site on a CPU of its own (the main array with fio), or both anywhere
        main_api, backup_api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        self.backup_fs = work / "backup-fs"
        image = work / "backup-fs.img"
        with open(image, "wb") as f:
            f.truncate(64 * GIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        self.backup_fs.mkdir()
        subprocess.run(["mount", "-o", "loop", str(image), str(self.backup_fs)], check=True)
        self.main = self._array(work, "main", 1, main_api, backup_api)
        self.backup = self._array(self.backup_fs, "backup", 2, backup_api, main_api)
        if pinned:
            pin(self.main, MAIN_SITE_CPUS)
            pin(self.backup, BACKUP_SITE_CPUS)
        self.channels = [grpc.insecure_channel(main_api), grpc.insecure_channel(backup_api)]
        self.main_stub, self.backup_stub = (pb_grpc.ArrayStub(c) for c in self.channels)

    def _array(self, work: Path, site: str, serial: int, api: str, remote: str) -> ArrayProcessHandle:
        link = ["--remote", remote, "--link-delay-ms", str(self.link_delay_ms)]
        return ArrayProcessHandle(
            pool=work / site, serial=serial, log_path=work / f"{site}.log", api=api, extra_args=link
        ).start()

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.main.stop()
        self.backup.stop()
        subprocess.run(["umount", str(self.backup_fs)], check=True)

    def uri(self, name: str) -> str:
        return f"nbd://{self.main.nbd_address}/{name}"

    def ldev(self, name: str, size: int = GIB) -> pb.Ldev:
        return self.main_stub.CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=name, size_bytes=size))

    def pair(self, ldev: pb.Ldev, group: str, synchronous: bool = False) -> float:
        """Pair the LDEV in a group of its own; the seconds until the backup is in sync."""
        start = time.monotonic()
        request = pb.CreatePairRequest(
            group_name=group, pvol_id=ldev.id, journal_capacity_bytes=8 * GIB, synchronous=synchronous
        )
        self.main_stub.CreatePair(request)
        self.wait_in_sync(group)
        return time.monotonic() - start

    def write_sequentially(self, name: str, size: str) -> None:
        argv = ["fio", "--name=fill", "--ioengine=nbd", f"--uri={self.uri(name)}", f"--size={size}"]
        argv += ["--rw=write", "--bs=1M", "--iodepth=4", "--output-format=json", "--cpus_allowed=0"]
        subprocess.run(argv, check=True, capture_output=True)

    def wait_in_sync(self, group: str) -> float:
        start = time.monotonic()
        while True:
            status = self.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name=group))
            paired = all(p.state == pb.PAIR for p in status.pairs)
            if paired and status.pending_records == 0 and status.confirmed_seq == status.main_seq:
                return time.monotonic() - start
            time.sleep(0.02)


def host_writes(sites: Sites, runtime: int, rounds: int = 1) -> list[str]:
    """Each workload on an LDEV that is not paired and on one that is, `rounds` times
    alternating: medians with their min-max (a ratio: the median of each round's ratio), and
    the main array's CPU per GiB written."""
    lines = [
        "| workload | replication | MiB/s | IOPS | p50 latency (ms) | p99 latency (ms) | main array CPU s/GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    pid = sites.main.process.pid if sites.main.process else 0
    for n, (workload, params) in enumerate(WORKLOADS.items()):
        off, on = sites.ldev(f"off-{n}"), sites.ldev(f"async-{n}")
        for ldev in (off, on):
            prefill(sites.uri(ldev.name), GIB)
        sites.pair(on, f"bench-{n}")
        runs: dict[str, list[Result]] = {"off": [], "async": []}
        for _ in range(rounds):
            for label, ldev in (("off", off), ("async", on)):
                runs[label].append(host_fio(sites.uri(ldev.name), workload, params, runtime, pid, sites.pinned))
        for label in ("off", "async"):
            cells = [spread([getattr(r, key) for r in runs[label]], digits)
                     for key, digits in (("mib_s", 0), ("iops", 0), ("p50_ms", 3), ("p99_ms", 3), ("cpu_s_per_gib", 2))]
            lines.append(f"| {workload} | {label} | " + " | ".join(cells) + " |")
        pairs = list(zip(runs["off"], runs["async"], strict=True))
        ratios = [spread([getattr(b, key) / getattr(a, key) for a, b in pairs])
                  for key in ("mib_s", "iops", "p50_ms", "p99_ms", "cpu_s_per_gib")]  # fmt: skip
        lines.append(f"| {workload} | async / off | " + " | ".join(ratios) + " |")
    return lines


def lag_at_rate(sites: Sites, seconds: int = 20) -> list[str]:
    ldev = sites.ldev("lag")
    sites.pair(ldev, "lag")
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            status = sites.main_stub.GetJournalGroup(pb.GetJournalGroupRequest(name="lag"))
            samples.append(status.lag_seconds)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    steady = {"rw": "write", "bs": "1M", "iodepth": "4", "rate": "50m"}
    host_fio(sites.uri("lag"), "lag", steady, seconds)
    stop.set()
    sampler.join()
    catch_up = sites.wait_in_sync("lag")
    samples.sort()
    return [
        f"| writing 50 MiB/s for {seconds} s | p50 lag | p99 lag | max lag | caught up after the writes |",
        "| --- | --- | --- | --- | --- |",
        f"| async | {statistics.median(samples):.3f} s | {samples[int(len(samples) * 0.99) - 1]:.3f} s | "
        f"{samples[-1]:.3f} s | {catch_up:.2f} s |",
    ]


def transfer(sites: Sites) -> list[str]:
    base = sites.ldev("base")
    sites.write_sequentially("base", "512M")
    os.sync()  # the copy starts on a quiet disk, as dd does below: not behind the base's own writeback
    initial = sites.pair(base, "base")

    burst = sites.ldev("burst")
    sites.pair(burst, "burst")
    start = time.monotonic()
    sites.write_sequentially("burst", "512M")
    written = time.monotonic() - start
    sites.wait_in_sync("burst")
    caught_up = time.monotonic() - start
    peer = dd_fdatasync_mib_s(sites.backup_fs, 512)
    return [
        "| transfer over loopback | seconds | MiB/s |",
        "| --- | --- | --- |",
        f"| initial copy of 512 MiB | {initial:.2f} | {512 / initial:.0f} |",
        f"| dd conv=fdatasync of 512 MiB on the backup's file system | {512 / peer:.2f} | {peer:.0f} |",
        f"| initial copy / dd | | {512 / initial / peer:.2f} |",
        f"| 512 MiB burst: host writes done | {written:.2f} | {512 / written:.0f} |",
        f"| 512 MiB burst: backup caught up | {caught_up:.2f} | {512 / caught_up:.0f} |",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="host writes: runs of off and async, alternating")
    parser.add_argument("--unpinned", action="store_true", help="both sites and fio on any CPU (default: one each)")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this part (repeatable); default: all"
    )
    args = parser.parse_args()
    parts = args.only or list(SECTIONS)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-replbench-") as tmp:
        sites = Sites(Path(tmp), pinned=not args.unpinned)
        try:
            runs = {
                "host-writes": lambda: host_writes(sites, args.runtime, args.rounds),
                "lag": lambda: lag_at_rate(sites),
                "transfer": lambda: transfer(sites),
            }
            sections = {SECTIONS[part]: runs[part]() for part in SECTIONS if part in parts}
        finally:
            sites.close()
    print_report(sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
