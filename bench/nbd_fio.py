"""fio over NBD: the array against nbdkit's file plugin and qemu-nbd, in one run.

Every server exports a file of the same size in the same folder (same file
system); fio's nbd engine (libnbd) drives three workloads against each:

    seq-write   1 MiB sequential writes, queue depth 4
    rand-write  4 KiB random writes, queue depth 16
    rand-read   4 KiB random reads, queue depth 16 (of data written before)

Prints one table with MiB/s, IOPS and the array's ratio to each peer.
Run with `make bench` or `python -m bench.nbd_fio [--runtime 20] [--size 1G]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from ccopy.launch import ArrayProcessHandle
from ccopy.units import parse_size
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def ccopy_array(work: Path, size: int) -> Iterator[str]:
    handle = ArrayProcessHandle(pool=work / "pool", serial=1, log_path=work / "array.log")
    handle.start()
    try:
        with grpc.insecure_channel(handle.api_address) as channel:
            pb_grpc.ArrayStub(channel).CreateLdev(pb.CreateLdevRequest(name=EXPORT, size_bytes=size))
        yield f"nbd://{handle.nbd_address}/{EXPORT}"
    finally:
        handle.stop()


@contextmanager
def peer(argv_for_port, image: Path, size: int) -> Iterator[str]:
    with open(image, "wb") as f:
        f.truncate(size)
    port = free_port()
    proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield f"nbd://127.0.0.1:{port}/{EXPORT}"
    finally:
        proc.terminate()
        proc.wait(10)


def nbdkit(work: Path, size: int):
    image = work / "nbdkit.img"
    argv = lambda port: ["nbdkit", "-f", "-i", "127.0.0.1", "-p", str(port), "-e", EXPORT, "file", f"file={image}"]  # noqa: E731
    return peer(argv, image, size)


def qemu_nbd(work: Path, size: int):
    image = work / "qemu.img"
    argv = lambda port: [  # noqa: E731
        "qemu-nbd", "-f", "raw", "-t", "-e", "16", "-b", "127.0.0.1", "-p", str(port), "-x", EXPORT,
        "--aio=threads", "--cache=writeback", str(image),
    ]  # fmt: skip
    return peer(argv, image, size)


def fio(uri: str, name: str, params: dict[str, str], size: int, runtime: int) -> Result:
    argv = ["fio", f"--name={name}", "--ioengine=nbd", f"--uri={uri}", f"--size={size}", "--output-format=json"]
    argv += [f"--runtime={runtime}", "--time_based", "--ramp_time=2", "--numjobs=1", "--randrepeat=0"]
    argv += [f"--{k}={v}" for k, v in params.items()]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    job = json.loads(out[out.index("{") :])["jobs"][0]
    side = job["write"] if params["rw"].endswith("write") else job["read"]
    percentiles = side.get("clat_ns", {}).get("percentile", {})
    return Result(
        mib_s=side["bw_bytes"] / (1 << 20),
        iops=side["iops"],
        p50_ms=percentiles.get("50.000000", 0) / 1e6,
        p99_ms=percentiles.get("99.000000", 0) / 1e6,
    )


def prefill(uri: str, size: int) -> None:
    """Write the whole export once so random reads hit data, not holes."""
    subprocess.run(
        ["fio", "--name=prefill", "--ioengine=nbd", f"--uri={uri}", f"--size={size}", "--rw=write", "--bs=1M",
         "--iodepth=4", "--output-format=json"],
        capture_output=True, check=True,
    )  # fmt: skip


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
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="folder on the file system under test")
    args = parser.parse_args()
    for tool in ("fio", "nbdkit", "qemu-nbd"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run `make bench`, which installs it", file=sys.stderr)
            return 1
    size = parse_size(args.size)
    servers = {"ccopy array": ccopy_array, "nbdkit file": nbdkit, "qemu-nbd": qemu_nbd}
    results: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-bench-") as tmp:
        for server, start in servers.items():
            work = Path(tmp) / server.replace(" ", "-")
            work.mkdir()
            with start(work, size) as uri:
                prefill(uri, size)
                results[server] = {w: fio(uri, w, p, size, args.runtime) for w, p in WORKLOADS.items()}
                print(f"measured {server}", file=sys.stderr, flush=True)
    print(render(results, size, args.runtime))
    return 0


def render(results: dict[str, dict[str, Result]], size: int, runtime: int) -> str:
    ours = results["ccopy array"]
    lines = [
        f"fio --ioengine=nbd, {size >> 20} MiB export, {runtime} s per workload, {time.strftime('%Y-%m-%d')}",
        machine(),
        "",
        "| workload | ccopy array | nbdkit file | qemu-nbd | array / nbdkit | array / qemu-nbd |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for workload in WORKLOADS:
        cells = [f"{results[s][workload].mib_s:.0f} MiB/s, {results[s][workload].iops:.0f} IOPS" for s in results]
        ratios = [ours[workload].iops / results[p][workload].iops for p in ("nbdkit file", "qemu-nbd")]
        lines.append(f"| {workload} | " + " | ".join(cells) + " | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
