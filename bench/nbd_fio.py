"""fio over NBD: the array against nbdkit's file plugin and qemu-nbd, in one run.

Every server exports a file of the same size in the same folder (same file
system); fio's nbd engine (libnbd) drives three workloads against each:

    seq-write   1 MiB sequential writes, queue depth 4
    rand-write  4 KiB random writes, queue depth 16
    rand-read   4 KiB random reads, queue depth 16 (of data written before)

Prints one table with MiB/s, IOPS and the array's ratio to each peer.
Run with `make bench` or `python -m bench.nbd_fio [--runtime 20] [--size 1G]`.

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
def ccopy_array(work: Path, size: int, tls: Tls | None = None) -> Iterator[str]:
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
        yield tls.uri(handle.nbd_address) if tls else f"nbd://{handle.nbd_address}/{EXPORT}"
    finally:
        handle.stop()


@contextmanager
def peer(argv_for_port, image: Path, size: int, tls: Tls | None) -> Iterator[str]:
    with open(image, "wb") as f:
        f.truncate(size)
    port = free_port()
    proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield tls.uri(f"127.0.0.1:{port}") if tls else f"nbd://127.0.0.1:{port}/{EXPORT}"
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


def fio(uri: str, name: str, params: dict[str, str], size: int, runtime: int, tls: Tls | None = None) -> Result:
    argv = [*fio_argv(tls), f"--name={name}", "--ioengine=nbd", f"--uri={uri}", f"--size={size}"]
    argv += ["--output-format=json"]
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
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="folder on the file system under test")
    parser.add_argument("--tls", action="store_true", help="also run every server with NBD over TLS")
    args = parser.parse_args()
    for tool in ("fio", "nbdkit", "qemu-nbd"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run `make bench`, which installs it", file=sys.stderr)
            return 1
    size = parse_size(args.size)
    servers = {"ccopy array": ccopy_array, "nbdkit file": nbdkit, "qemu-nbd": qemu_nbd}
    results: dict[str, dict[str, Result]] = {}
    secured: dict[str, dict[str, Result]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ccopy-bench-") as tmp:
        if args.tls:
            Path(tmp).chmod(0o755)  # fio's unprivileged user reaches its certificates through it
        tls = Tls.make(Path(tmp) / "tls") if args.tls else None
        for server, start in servers.items():
            for mode, into in ((None, results), (tls, secured)) if tls else ((None, results),):
                work = Path(tmp) / (server.replace(" ", "-") + ("-tls" if mode else ""))
                work.mkdir()
                with start(work, size, mode) as uri:
                    prefill(uri, size, mode)
                    into[server] = {w: fio(uri, w, p, size, args.runtime, mode) for w, p in WORKLOADS.items()}
                    print(f"measured {server}{' over TLS' if mode else ''}", file=sys.stderr, flush=True)
    print(render(results, size, args.runtime))
    if secured:
        print("\nNBD over TLS (x509, client certificates required)\n")
        print(render(secured, size, args.runtime, heading=False))
        print("\n" + render_cost(results, secured))
    return 0


def render_cost(plain: dict[str, dict[str, Result]], secured: dict[str, dict[str, Result]]) -> str:
    """IOPS over TLS as a share of the same server's without it."""
    lines = ["| workload | " + " | ".join(f"{s}: TLS / plain" for s in plain) + " |",
             "| --- |" + " --- |" * len(plain)]  # fmt: skip
    for workload in WORKLOADS:
        shares = [secured[s][workload].iops / plain[s][workload].iops for s in plain]
        lines.append(f"| {workload} | " + " | ".join(f"{share:.2f}" for share in shares) + " |")
    return "\n".join(lines)


def render(results: dict[str, dict[str, Result]], size: int, runtime: int, heading: bool = True) -> str:
    ours = results["ccopy array"]
    head = [f"fio --ioengine=nbd, {size >> 20} MiB export, {runtime} s per workload, {time.strftime('%Y-%m-%d')}",
            machine(), ""] if heading else []  # fmt: skip
    lines = [
        *head,
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
