"""Real NBD clients against a real array process: qemu-io, qemu-img, nbdinfo, nbdcopy."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from ccopy.launch import ArrayProcessHandle
from ccopy_api import array_pb2 as pb
from ccopy_api import array_pb2_grpc as pb_grpc
from csi_driver.attach import nbd_uri
from tests.conftest import require_tools, wait_for
from tests.integration.clients import data_runs, nbdinfo_map, qemu_io, qemu_io_fails
from tests.replication.test_metrics import scrape, value

MIB = 1 << 20


def test_pattern_writes_read_back(array_proc, make_ldev):
    make_ldev("pat", 64 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "pat")
    qemu_io(uri, "write -P 0xa5 0 4M", "write -P 0x5a 4M 512", "write -P 0x33 63M 1M", "flush")
    qemu_io(uri, "read -P 0xa5 0 4M", "read -P 0x5a 4M 512", "read -P 0 5M 1M", "read -P 0x33 63M 1M")


def test_fua_writes_and_unaligned_ranges(array_proc, make_ldev):
    make_ldev("fua", 16 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "fua")
    qemu_io(uri, "write -f -P 0x11 1 4097", "write -P 0x22 5000 3")
    qemu_io(uri, "read -P 0 0 1", "read -P 0x11 1 4097", "read -P 0 4098 902", "read -P 0x22 5000 3")


def test_nbdinfo_shows_holes_after_trim_and_write_zeroes(array_proc, make_ldev):
    make_ldev("holes", 32 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "holes")
    assert nbdinfo_map(uri) == [(0, 32 * MIB, "hole,zero")]
    qemu_io(uri, "write -P 1 0 8M", "flush")
    assert data_runs(uri) == [(0, 8 * MIB)]
    qemu_io(uri, "discard 1M 2M", "write -z 6M 1M")
    assert data_runs(uri) == [(0, MIB), (3 * MIB, 3 * MIB), (7 * MIB, MIB)]
    qemu_io(uri, "read -P 1 0 1M", "read -P 0 1M 2M", "read -P 1 3M 3M", "read -P 0 6M 1M", "read -P 1 7M 1M")


def test_qemu_img_sees_the_export_and_its_allocation(array_proc, make_ldev, stub):
    require_tools("qemu-img")
    ldev = make_ldev("img", 128 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "img")
    qemu_io(uri, "write -P 7 10M 3M")
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", uri], capture_output=True, check=True).stdout
    )
    assert info["virtual-size"] == 128 * MIB
    mapping = json.loads(
        subprocess.run(["qemu-img", "map", "--output=json", "-f", "raw", uri], capture_output=True, check=True).stdout
    )
    assert [(m["start"], m["length"]) for m in mapping if m["data"]] == [(10 * MIB, 3 * MIB)]
    allocated = stub.GetLdev(pb.GetLdevRequest(id=ldev.id)).allocated_bytes
    assert 3 * MIB <= allocated < 4 * MIB  # thin: only what was written


def test_nbdcopy_of_a_sparse_ldev_copies_only_data(array_proc, make_ldev, tmp_path: Path):
    require_tools("nbdcopy", "qemu-img")
    make_ldev("sparse", 256 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "sparse")
    qemu_io(uri, "write -P 0x42 0 1M", "write -P 0x43 100M 2M", "write -P 0x44 255M 1M")
    copy = tmp_path / "copy.raw"
    subprocess.run(["nbdcopy", uri, str(copy)], check=True, timeout=120)
    assert copy.stat().st_size == 256 * MIB
    assert copy.stat().st_blocks * 512 <= 5 * MIB  # 4 MiB of data, holes stay holes
    subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, str(copy)], check=True, timeout=120)
    # And back: nbdcopy into a second LDEV, then compare the two exports.
    make_ldev("restored", 256 * MIB)
    back = nbd_uri(array_proc.nbd_address, "restored")
    subprocess.run(["nbdcopy", str(copy), back], check=True, timeout=120)
    subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, back], check=True, timeout=120)


def test_read_only_ldev_is_exported_read_only(array_proc, make_ldev):
    make_ldev("ro", 8 * MIB, read_only=True)
    uri = nbd_uri(array_proc.nbd_address, "ro")
    qemu_io(uri, "read -P 0 0 1M", read_only=True)
    qemu_io_fails(uri, "write -P 1 0 4k")  # qemu sees NBD_FLAG_READ_ONLY and refuses to open rw
    out = subprocess.run(["nbdinfo", "--json", uri], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["exports"][0]["is_read_only"] is True


def test_list_shows_every_ldev(array_proc, make_ldev):
    require_tools("nbdinfo")
    for name in ("alpha", "beta", "gamma"):
        make_ldev(name, MIB)
    out = subprocess.run(
        ["nbdinfo", "--list", "--json", f"nbd://{array_proc.nbd_address}"], capture_output=True, text=True, check=True
    ).stdout
    assert sorted(e["export-name"] for e in json.loads(out)["exports"]) == ["alpha", "beta", "gamma"]


def test_eight_clients_write_disjoint_regions_at_once(array_proc, make_ldev):
    make_ldev("shared", 64 * MIB)
    uri = nbd_uri(array_proc.nbd_address, "shared")

    def writer(i: int) -> None:
        base = i * 8 * MIB
        # Many requests per client, each client its own pattern and region.
        commands = [f"aio_write -P {i + 1} {base + k * 256 * 1024} 256k" for k in range(32)]
        qemu_io(uri, *commands, "aio_flush", "flush")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    qemu_io(uri, *[f"read -P {i + 1} {i * 8 * MIB} 8M" for i in range(8)])


def test_clients_on_many_ldevs_at_once(array_proc, make_ldev):
    for i in range(6):
        make_ldev(f"multi-{i}", 16 * MIB)

    def exercise(i: int) -> None:
        uri = nbd_uri(array_proc.nbd_address, f"multi-{i}")
        qemu_io(uri, f"write -P {0x10 + i} 0 16M", "flush", f"read -P {0x10 + i} 0 16M")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(exercise, range(6)))


def test_random_data_round_trips_through_nbdcopy(array_proc, make_ldev, tmp_path: Path):
    require_tools("nbdcopy")
    make_ldev("rand", 8 * MIB)
    source = tmp_path / "src.raw"
    source.write_bytes(os.urandom(8 * MIB))
    uri = nbd_uri(array_proc.nbd_address, "rand")
    subprocess.run(["nbdcopy", str(source), uri], check=True, timeout=60)
    out = tmp_path / "out.raw"
    subprocess.run(["nbdcopy", uri, str(out)], check=True, timeout=60)
    assert out.read_bytes() == source.read_bytes()


def test_a_normal_disconnect_with_metrics_on_logs_no_error(tmp_path: Path):
    """With --metrics, every NBD_CMD_DISC logged `level=error ... Fatal error:
    protocol.buffer_updated() call failed`: the session was closed before the request was
    counted. DISC has no reply, so it is not counted; every answered request still is."""
    require_tools("nbdinfo")
    log = tmp_path / "array.log"
    array = ArrayProcessHandle(tmp_path / "pool", 20003, log, extra_args=["--metrics", "127.0.0.1:0"]).start()
    try:
        with grpc.insecure_channel(array.api_address) as channel:
            ldev = pb_grpc.ArrayStub(channel).CreateLdev(
                pb.CreateLdevRequest(name="metered", size_bytes=8 * MIB, open_to_all=True)
            )
        uri = nbd_uri(array.nbd_address, "metered")
        qemu_io(uri, "write -P 0x5a 0 64k", "flush")
        qemu_io(uri, "read -P 0x5a 0 64k", read_only=True)
        subprocess.run(["nbdinfo", uri], capture_output=True, check=True, timeout=60)
        # Each client's DISC is served before the server sees its close: wait for all three.
        assert wait_for(lambda: log.read_text().count("event=nbd_disconnected") == 3), log.read_text()
        samples = scrape(array.metrics_address)
    finally:
        array.stop()
    errors = [line for line in log.read_text().splitlines() if "level=error" in line]
    assert errors == []
    for command in ("WRITE", "FLUSH", "READ"):
        assert value(samples, "ccopy_nbd_request_seconds_count", ldev=ldev.display_id, command=command) >= 1
    assert ("ccopy_nbd_request_seconds_count", (("command", "DISC"), ("ldev", ldev.display_id))) not in samples
