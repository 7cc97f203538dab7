"""fio over NBD: the array against nbdkit's file plugin and qemu-nbd, in one run.

Every server exports a file of the same size in the same folder (same file
system); fio's nbd engine (libnbd) drives three workloads against each:

    seq-write   1 MiB sequential writes, queue depth 4
    rand-write  4 KiB random writes, queue depth 16
    rand-read   4 KiB random reads, queue depth 16 (of data written before)

Prints one table with MiB/s, IOPS and the array's ratio to each peer, and the
CPU each server spent per GiB written (its process's user and system time over
the write workloads, all threads). With `--rounds N` the servers run N times,
alternating, and every figure is the median of the rounds with its min-max (a
ratio: the median of each round's ratio).
Run with `make bench` or `python -m bench.nbd_fio [--runtime 20] [--size 1G] [--rounds 5]`.

`--tls` runs every server a second time with NBD over TLS (x509, client
certificates required: the array with --nbd-tls-*, nbdkit with --tls=require,
qemu-nbd with tls-creds-x509) and prints the cost of TLS for each. fio's libnbd
refuses certificate paths in URIs, so with TLS it runs as an unprivileged user
whose ~/.pki/libnbd holds the client certificate (libnbd's default place).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from ccopy.launch import ArrayProcessHandle, free_port
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from ccopy_common.pki import CertificateAuthority
from ccopy_common.units import parse_size

EXPORT = "bench"
WORKLOADS = {
    "seq-write": {"rw": "write", "bs": "1M", "iodepth": "4"},
    "rand-write": {"rw": "randwrite", "bs": "4k", "iodepth": "16"},
    "rand-read": {"rw": "randread", "bs": "4k", "iodepth": "16"},
}


@dataclass
class Result:
    mib_s: float
    iops: float
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_s_per_gib: float = 0.0  # write workloads: the server's CPU per GiB written


def cpu_seconds(pid: int) -> float:
    """User and system time of a process so far, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass(frozen=True)
class Tls:
    """Certificates for one TLS run: the servers' folder (ca-cert.pem, server-cert.pem,
    server-key.pem) and the home of the user fio runs as (~/.pki/libnbd)."""

    server: Path
    home: Path

    @staticmethod
    def make(folder: Path) -> Tls:
        ca = CertificateAuthority(folder / "pki", "bench-ca")
        server, client = ca.issue("server", san="IP:127.0.0.1"), ca.issue("bench-client")
        served, home = ca.x509_folder(folder / "server", "server", server), folder / "home"
        ca.x509_folder(home / ".pki" / "libnbd", "client", client)
        for path in [folder, *folder.rglob("*")]:  # fio's user reads its certificates
            path.chmod(0o755 if path.is_dir() else 0o644)
        return Tls(served, home)

    def uri(self, address: str) -> str:
        return f"nbds://{address}/{EXPORT}"


@contextmanager
def ccopy_array(work: Path, size: int, tls: Tls | None = None) -> Iterator[tuple[str, int]]:
    extra = []
    if tls is not None:
        extra = ["--nbd-tls-cert", str(tls.server / "server-cert.pem"),
                 "--nbd-tls-key", str(tls.server / "server-key.pem"),
                 "--nbd-tls-client-ca", str(tls.server / "ca-cert.pem")]  # fmt: skip
    handle = ArrayProcessHandle(pool=work / "pool", serial=1, log_path=work / "array.log", extra_args=extra)
    handle.start()
    try:
        with grpc.insecure_channel(handle.api_address) as channel:
            pb_grpc.ArrayStub(channel).CreateLdev(pb.CreateLdevRequest(open_to_all=True, name=EXPORT, size_bytes=size))
        assert handle.process is not None
        yield (tls.uri(handle.nbd_address) if tls else f"nbd://{handle.nbd_address}/{EXPORT}"), handle.process.pid
    finally:
        handle.stop()


@contextmanager
def peer(argv_for_port, image: Path, size: int, tls: Tls | None) -> Iterator[tuple[str, int]]:
    with open(image, "wb") as f:
        f.truncate(size)
    port = free_port()
    proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield (tls.uri(f"127.0.0.1:{port}") if tls else f"nbd://127.0.0.1:{port}/{EXPORT}"), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def nbdkit(work: Path, size: int, tls: Tls | None = None):
    image = work / "nbdkit.img"
    secure = ["--tls=require", f"--tls-certificates={tls.server}", "--tls-verify-peer"] if tls else []
    argv = lambda port: ["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "-e", EXPORT, *secure,  # noqa: E731
                         "file", f"file={image}"]  # fmt: skip
    return peer(argv, image, size, tls)


def qemu_nbd(work: Path, size: int, tls: Tls | None = None):
    image = work / "qemu.img"
    secure = ["--object", f"tls-creds-x509,id=tls0,dir={tls.server},endpoint=server,verify-peer=on",
              "--tls-creds", "tls0"] if tls else []  # fmt: skip
    argv = lambda port: [  # noqa: E731
        "qemu-nbd", "-f", "raw", "-t", "-e", "16", "-b", "127.0.0.1", "-p", str(port), "-x", EXPORT,
        "--aio=threads", "--cache=writeback", *secure, str(image),
    ]  # fmt: skip
    return peer(argv, image, size, tls)


def fio_argv(tls: Tls | None) -> list[str]:
    """fio itself, as the user whose home holds the client certificate when TLS is on."""
    if tls is None:
        return ["fio"]
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", f"HOME={tls.home}", "fio"]


RAMP_SECONDS = 2


def fio(
    uri: str, name: str, params: dict[str, str], size: int, runtime: int, tls: Tls | None = None, pid: int = 0
) -> Result:
    argv = [*fio_argv(tls), f"--name={name}", "--ioengine=nbd", f"--uri={uri}", f"--size={size}"]
    argv += ["--output-format=json", "--lat_percentiles=1"]
    argv += [f"--runtime={runtime}", "--time_based", f"--ramp_time={RAMP_SECONDS}", "--numjobs=1", "--randrepeat=0"]
    argv += [f"--{k}={v}" for k, v in params.items()]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu_before if pid else 0.0
    job = json.loads(out[out.index("{") :])["jobs"][0]
    writes = params["rw"].endswith("write")
    side = job["write"] if writes else job["read"]
    # Latency as the host sees it: submission and completion (libnbd's submit can wait for the
    # reply, which would leave the completion latency alone near zero).
    percentiles = side.get("lat_ns", {}).get("percentile", {})
    # fio counts bytes after its ramp only; the CPU is the whole run's: the ramp's bytes at the same rate
    written_gib = side["bw_bytes"] * (runtime + RAMP_SECONDS) / (1 << 30)
    return Result(
        mib_s=side["bw_bytes"] / (1 << 20),
        iops=side["iops"],
        p50_ms=percentiles.get("50.000000", 0) / 1e6,
        p99_ms=percentiles.get("99.000000", 0) / 1e6,
        cpu_s_per_gib=cpu / written_gib if writes and written_gib else 0.0,
    )


def prefill(uri: str, size: int, tls: Tls | None = None) -> None:
    """Write the whole export once so random reads hit data, not holes."""
    subprocess.run(
        [*fio_argv(tls), "--name=prefill", "--ioengine=nbd", f"--uri={uri}", f"--size={size}", "--rw=write", "--bs=1M",
         "--iodepth=4", "--output-format=json"],
        capture_output=True, check=True,
    )  # fmt: skip


def dd_fdatasync_mib_s(folder: Path, mib: int) -> float:
    """What the file system under `folder` sustains for one sequential writer that ends
    with fdatasync (`dd conv=fdatasync`): the peer every copy of ours is measured against."""
    target = folder / "dd-peer"
    try:
        start = time.perf_counter()
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={mib}", "conv=fdatasync"],
            check=True, capture_output=True,
        )  # fmt: skip
        return mib / (time.perf_counter() - start)
    finally:
        target.unlink(missing_ok=True)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux {platform.release()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--runtime", type=int, default=15, help="seconds per workload")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every server, alternating; medians printed")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="folder on the file system under test")
    parser.add_argument("--tls", action="store_true", help="also run every server with NBD over TLS")
    args = parser.parse_args()
    for tool in ("fio", "nbdkit", "qemu-nbd"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run `make bench`, which installs it", file=sys.stderr)
            return 1
    size = parse_size(args.size)
    servers = {"ccopy array": ccopy_array, "nbdkit file": nbdkit, "qemu-nbd": qemu_nbd}
    rounds: list[dict[str, dict[str, Result]]] = []
    secured_rounds: list[dict[str, dict[str, Result]]] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-bench-") as tmp:
        if args.tls:
            Path(tmp).chmod(0o755)  # fio's unprivileged user reaches its certificates through it
        tls = Tls.make(Path(tmp) / "tls") if args.tls else None
        for round_ in range(args.rounds):
            results: dict[str, dict[str, Result]] = {}
            secured: dict[str, dict[str, Result]] = {}
            for server, start in servers.items():
                for mode, into in ((None, results), (tls, secured)) if tls else ((None, results),):
                    work = Path(tmp) / f"{server.replace(' ', '-')}{'-tls' if mode else ''}-{round_}"
                    work.mkdir()
                    with start(work, size, mode) as (uri, pid):
                        prefill(uri, size, mode)
                        into[server] = {
                            w: fio(uri, w, p, size, args.runtime, mode, pid) for w, p in WORKLOADS.items()
                        }
                    shutil.rmtree(work)
                    print(f"round {round_ + 1}: measured {server}{' over TLS' if mode else ''}", file=sys.stderr,
                          flush=True)  # fmt: skip
            rounds.append(results)
            if secured:
                secured_rounds.append(secured)
    print(render(rounds, size, args.runtime))
    if secured_rounds:
        print("\nNBD over TLS (x509, client certificates required)\n")
        print(render(secured_rounds, size, args.runtime, heading=False))
        print("\n" + render_cost(rounds, secured_rounds))
    return 0


def spread(values: list[float], digits: int = 2) -> str:
    """The median, and the min-max when there is more than one value."""
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def render_cost(plain: list[dict[str, dict[str, Result]]], secured: list[dict[str, dict[str, Result]]]) -> str:
    """IOPS over TLS as a share of the same server's without it."""
    servers = list(plain[0])
    lines = ["| workload | " + " | ".join(f"{s}: TLS / plain" for s in servers) + " |",
             "| --- |" + " --- |" * len(servers)]  # fmt: skip
    for workload in WORKLOADS:
        shares = [spread([t[s][workload].iops / p[s][workload].iops for p, t in zip(plain, secured, strict=True)])
                  for s in servers]  # fmt: skip
        lines.append(f"| {workload} | " + " | ".join(shares) + " |")
    return "\n".join(lines)


def render(rounds: list[dict[str, dict[str, Result]]], size: int, runtime: int, heading: bool = True) -> str:
    servers = list(rounds[0])
    head = [f"fio --ioengine=nbd, {size >> 20} MiB export, {runtime} s per workload, {len(rounds)} round(s), "
            f"{time.strftime('%Y-%m-%d')}", machine(), ""] if heading else []  # fmt: skip
    lines = [
        *head,
        "| workload | " + " | ".join(f"{s} (IOPS)" for s in servers) + " | array / nbdkit | array / qemu-nbd |",
        "| --- |" + " --- |" * (len(servers) + 2),
    ]
    for workload in WORKLOADS:
        cells = [spread([r[s][workload].iops for r in rounds], 0) for s in servers]
        ratios = [spread([r["ccopy array"][workload].iops / r[p][workload].iops for r in rounds])
                  for p in ("nbdkit file", "qemu-nbd")]  # fmt: skip
        lines.append(f"| {workload} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines += ["", "| CPU seconds per GiB written | " + " | ".join(servers) + " | array / nbdkit |",
              "| --- |" + " --- |" * (len(servers) + 1)]  # fmt: skip
    for workload in (w for w, p in WORKLOADS.items() if p["rw"].endswith("write")):
        cells = [spread([r[s][workload].cpu_s_per_gib for r in rounds]) for s in servers]
        ratio = spread([r["ccopy array"][workload].cpu_s_per_gib / r["nbdkit file"][workload].cpu_s_per_gib
                        for r in rounds])  # fmt: skip
        lines.append(f"| {workload} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
